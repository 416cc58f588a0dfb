"""Commands for the captions worth asking for: suggest (which items to describe) and caption (give
a collection the captions a person wrote, without encoding its items again)."""

from __future__ import annotations

import json
import time

from retrieval.api import apply_captions, suggest, write_todo
from retrieval.cli.collection_cmds import _given_options, _settings
from retrieval.cli.output import anchor_count_words
from retrieval.store.format import read_manifest


def cmd_suggest(a) -> int:
    rows = suggest(a.index, a.n, seed=a.seed)
    if a.out:
        write_todo(rows, a.out)
        print(f"wrote {len(rows)} items to describe to {a.out}, most useful first: fill in its caption column "
              f"(leave a row blank to skip it), then: retrieval caption {a.index} {a.out}")
        return 0
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("items whose captions would help most (coverage of the corpus by the captioned items), most useful first")
    print(f"  {'rank':>4}  {'id':>6}  path")
    for r in rows:
        print(f"  {r['rank']:>4}  {r['id']:>6}  {r['path']}")
    return 0


def cmd_caption(a) -> int:
    changes = _given_options(a)
    t = time.perf_counter()
    got = apply_captions(a.folder, a.table, a.out, **changes)
    m = read_manifest(got["path"], verify=False)
    own = m["anchors"].get("self") or {}
    joined = (f"{own['count']} captioned items are anchors ({own['why']})" if own.get("kept")
              else f"self-anchoring not kept ({own['why']})" if own else "no self-anchoring")
    print(f"captioned {a.folder} -> {got['path']} in {time.perf_counter() - t:.1f} s: {got['new']} new, "
          f"{got['replaced']} replaced, {got['unchanged']} unchanged, {got['blank']} blank rows skipped; "
          f"{got['captioned']} of {m['counts']['items']} items now have a caption; {joined}; "
          f"{anchor_count_words(m)}. No item was encoded, only the {got['new'] + got['replaced']} captions")
    return 0


def add_parsers(sub, common) -> None:
    """The subcommands of this module, on ``sub``; ``common(sp)`` adds the options every command shares."""
    su = sub.add_parser("suggest", help="the uncaptioned items whose captions would help most, as a table to fill",
                        epilog="Then fill the table's caption column and give it back with 'retrieval caption'.")
    su.add_argument("index", help="collection folder")
    su.add_argument("-n", type=int, default=50, help="how many items (default 50)")
    su.add_argument("--out", default=None, help="write the table to fill here (.csv or .parquet: id, path, caption)")
    su.add_argument("--seed", type=int, default=0, help="for the sample weighed in corpora over 4096 items")
    su.add_argument("--json", action="store_true")
    su.set_defaults(func=cmd_suggest)

    ca = sub.add_parser("caption", help="give items captions (a table of id or path, and caption) and rewrite the "
                                        "collection: only the captions are encoded",
                        epilog="The captioned items join the anchors (self-anchoring) and are found by their "
                               "captions. Options as for reanchor; k and p not given follow the anchors.")
    ca.add_argument("folder", metavar="INDEX", help="collection folder")  # --index is the index backend here
    ca.add_argument("table", help=".csv/.parquet with an id (or path) column and a caption column, e.g. the one "
                                  "'retrieval suggest --out' wrote, filled in; blank captions are skipped")
    ca.add_argument("--out", default=None, help="write the result here (default: replace the collection, atomically)")
    _settings(ca, defaults=False)
    common(ca)
    ca.set_defaults(func=cmd_caption)
