"""The captions worth asking for, and captions given to a built collection.

A corpus's captioned items are anchors of its own domain (retrieval/build/self_anchors.py), so a
person willing to describe a few pictures should describe those that help most. :func:`suggest`
picks them by coverage: greedy facility location over the items' own embeddings, starting from what
the items already captioned cover, so each pick is the uncaptioned item that most raises the sum,
over the corpus, of every item's best cosine with a captioned one. Against the same number chosen
at random it measured higher test R@10 on the uncaptioned items in 5 of 6 settings, both where
captions are added to a corpus already partly captioned (scripts/suggest_probe.py,
results/experiments/suggest.md); fps and k-means did not. Only the embeddings are read, never a
caption, so the choice cannot favour the queries. Beyond :data:`SAMPLE` items the greedy weighs a
seeded sample (its cost grows with the square of the items weighed).

:func:`apply_captions` takes a table of ``id`` (or ``path``) and ``caption`` (the suggestion table,
filled in) and writes the collection again as a fresh build of the corpus with those captions
would write it: only the new captions are encoded (the text encoder as built); the items are not,
and the given anchors come from the anchor cache (encoded again only if the cache lost them). Then
self-anchoring and the caption match use them. Options are those of reanchor (k and p not given
follow the anchors, as in a fresh build).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from retrieval.build.anchors import AnchorSet, stored_anchor_set
from retrieval.build.options import BuildOptions
from retrieval.build.reanchor import _given, remake, stored_corpus
from retrieval.build.self_anchors import given_count
from retrieval.core.selection import coverage_select
from retrieval.encoders import load_encoder_as_built
from retrieval.errors import InputError
from retrieval.media.tables import CAPTION_COLUMNS, pick_column, read_table
from retrieval.store.arrow import write_table_atomic
from retrieval.store.format import now_iso
from retrieval.store.reader import StoredCollection
from retrieval.store.sharded import is_sharded

log = logging.getLogger(__name__)
SAMPLE = 4096      # items the coverage greedy weighs at most, as candidates and as the corpus covered
TODO_SUFFIXES = (".csv", ".parquet")


def _collection(folder, what: str) -> StoredCollection:
    if is_sharded(folder):
        raise InputError(f"expected a collection folder to {what}, got the sharded collection {str(folder)!r}; "
                         f"captions are not given to sharded collections yet: rebuild it with a captioned corpus")
    return StoredCollection.read(folder)


def _sample(rows: np.ndarray, rng) -> np.ndarray:
    return np.sort(rng.choice(rows, SAMPLE, replace=False)) if len(rows) > SAMPLE else rows


def suggest(folder, n: int = 50, *, seed: int = 0) -> List[Dict]:
    """The ``n`` uncaptioned items whose captions would help most, most useful first: rows of
    ``rank``, ``id``, ``path`` and an empty ``caption`` to fill (see the module docstring)."""
    col = _collection(folder, "suggest captions for")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise InputError(f"expected a number of suggestions >= 1, got {n!r}")
    rows, captioned, _ = stored_corpus(col)
    vecs = col.sides[col.modality].abs
    open_rows = np.setdiff1d(np.arange(len(rows)), np.asarray(captioned, np.int64))
    if not len(open_rows):
        raise InputError(f"expected items without a caption to suggest, got a collection whose {len(rows)} items "
                         f"all have one")
    rng = np.random.default_rng(seed)
    pool, corpus = _sample(open_rows, rng), _sample(np.arange(len(rows)), rng)
    have = _sample(np.asarray(captioned, np.int64), rng)
    picked = pool[coverage_select(np.asarray(vecs[pool], np.float32), np.asarray(vecs[corpus], np.float32),
                                  min(int(n), len(pool)), covered=np.asarray(vecs[have], np.float32))]
    return [{"rank": r + 1, "id": int(col.item_ids[i]), "path": rows[i]["path"], "caption": ""}
            for r, i in enumerate(picked)]


def write_todo(suggestions: List[Dict], path) -> Path:
    """The suggestions as a table to fill (``id``, ``path``, ``caption``), written atomically."""
    path = Path(path)
    if path.suffix.lower() not in TODO_SUFFIXES:
        raise InputError(f"expected a table path ending in {' or '.join(TODO_SUFFIXES)}, got {str(path)!r}")
    table = pa.table({"id": pa.array([s["id"] for s in suggestions], pa.int64()),
                      "path": pa.array([s["path"] for s in suggestions], pa.string()),
                      "caption": pa.array([s["caption"] for s in suggestions], pa.string())})
    write_table_atomic(table, str(path), path.suffix.lower().lstrip("."))
    return path


def _caption_table(table) -> Tuple[pa.Table, Path]:
    """The captions as a table, and what to call it in messages: a table file's path, or rows given
    in memory (a pyarrow table, or dicts such as ``{"id": 7, "caption": "a red bus"}``)."""
    if isinstance(table, pa.Table):
        return table, Path("the captions given")
    if isinstance(table, (list, tuple)):
        try:
            return pa.Table.from_pylist([dict(r) for r in table]), Path("the captions given")
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise InputError(f"expected caption rows as mappings of id (or path) and caption, got {exc}") from exc
    return read_table(Path(table)), Path(table)


def _given_captions(col: StoredCollection, table) -> Tuple[Dict[int, str], Dict]:
    """Stored row -> new caption from the table, and the counts of rows skipped (blank captions)."""
    table, path = _caption_table(table)
    cap = pick_column(table, CAPTION_COLUMNS, path=path, role="caption", required=True)
    by = pick_column(table, ("id", "path"), path=path, role="item (id or path)", required=True)
    keys, caps = table.column(by).to_pylist(), table.column(cap).to_pylist()
    if by == "id":
        row_of = {int(i): r for r, i in enumerate(col.item_ids.tolist())}
        try:
            keys = [int(k) if k is not None else None for k in keys]
        except (TypeError, ValueError) as exc:
            raise InputError(f"expected whole-number item ids in the id column of {str(path)!r}: {exc}") from exc
    else:
        row_of = {}
        for r, p in enumerate(col.items["path"]):
            row_of.setdefault(p, r)
            row_of.setdefault(os.path.abspath(p), r)
        keys = [os.path.abspath(k) if k is not None and k not in row_of else k for k in keys]
    unknown = [k for k in keys if k not in row_of]
    if unknown:
        raise InputError(f"expected the {by}s of items in {str(col.folder)!r}, got {len(unknown)} unknown in "
                         f"{str(path)!r}: {unknown[:5]}{' …' if len(unknown) > 5 else ''}; nothing was changed")
    out, blank, seen = {}, 0, set()
    for k, c in zip(keys, caps):
        r = row_of[k]
        if r in seen:
            raise InputError(f"expected each item once in {str(path)!r}, got {by} {k!r} twice; nothing was changed")
        seen.add(r)
        if c is None or not str(c).strip():
            blank += 1
            continue
        out[r] = str(c)  # as a build would read it from a corpus table
    return out, {"rows": len(keys), "blank": blank}


def _corpus(col: StoredCollection, new: Dict[int, str], encoder) -> Tuple[Dict, Dict]:
    """What :func:`remake` takes as ``corpus`` with the new captions, and the counts of what changed.
    Captions that did not change keep their stored vectors; the others are encoded."""
    rows, captioned, cap_vecs = stored_corpus(col)
    old = {r: v for r, v in zip(captioned, cap_vecs)}
    changed = [r for r, c in new.items() if rows[r]["caption"] != c]
    replaced = sum(1 for r in changed if r in old)
    rows = [dict(row, caption=new.get(r, row["caption"])) for r, row in enumerate(rows)]
    encoded = {}
    if changed:
        vecs = encoder.encode([rows[r]["caption"] for r in changed], batch_size=64, show_progress_bar=False)
        encoded = dict(zip(changed, np.asarray(vecs, np.float32)))
    captioned = sorted(set(captioned) | set(new))
    stacked = np.vstack([encoded[r] if r in encoded else old[r] for r in captioned]).astype(np.float32)
    corpus = {"item_vecs": col.sides[col.modality].abs, "cap_vecs": stacked, "rows": rows, "captioned": captioned}
    if col.item_labels is not None:
        corpus.update(labels=col.item_labels, label_cfg=col.manifest["labels"])
    return corpus, {"new": len(changed) - replaced, "replaced": replaced, "unchanged": len(new) - len(changed),
                    "captioned": len(captioned)}


def _given_anchors(col: StoredCollection) -> AnchorSet:
    """The anchors the collection was given (without the corpus's own, which self-anchoring makes
    again from the new captions)."""
    m, modality = col.manifest, col.modality
    anchor_set = stored_anchor_set(col.folder, m, modality, "give the collection captions")
    n = given_count(m["anchors"])
    if n < len(anchor_set) and anchor_set.source == str(col.folder / "anchors.parquet"):
        anchor_set = AnchorSet(anchor_set.paths[:n], anchor_set.captions[:n], source=m["anchors"].get("source", ""),
                               modality=modality)
    return anchor_set


def _self_anchoring(col: StoredCollection, o: BuildOptions, given: set) -> Tuple[BuildOptions, set]:
    """Self-anchoring as the build had it: off when the collection had captions and no self-anchoring
    record (built with it off), else the build's default rule, unless the options say."""
    if "self_anchors" in given:
        return o, given
    built_off = col.manifest["counts"].get("corpus_captions", 0) > 0 and not col.manifest["anchors"].get("self")
    return o.replace(self_anchors=False if built_off else None), given | {"self_anchors"}


def apply_captions(folder, table, out=None, options: Optional[BuildOptions] = None, **changes) -> Dict:
    """Give the items named in ``table`` (a .csv/.parquet file or rows in memory, with ``id`` or
    ``path``, and ``caption``) their captions
    and write the collection again (default: in place, atomically); see the module docstring.
    Blank captions are skipped; an unknown id or path, or an item named twice, changes nothing.
    Returns the counts (``new``, ``replaced``, ``unchanged``, ``blank``, ``captioned``) and ``path``.

    >>> apply_captions("indexes/photos", "todo.csv")  # doctest: +SKIP
    """
    col = _collection(folder, "give captions to")
    given = _given(options, changes)
    o, given = _self_anchoring(col, BuildOptions.of(options, **changes), given)
    new, read = _given_captions(col, table)
    if not new:
        raise InputError(f"expected at least one filled caption, got {read['rows']} rows with "
                         f"blank captions; nothing was changed")
    corpus, counts = _corpus(col, new, load_encoder_as_built(col.manifest, "text", device=o.device))
    counts.update(blank=read["blank"])
    source = str(table) if isinstance(table, (str, Path)) else "rows given in memory"
    record = {"captions_given": dict(counts, at=now_iso(), source=source)}
    path = remake(col, _given_anchors(col), out, o, given, record=record, corpus=corpus)
    log.info("gave %d captions to %s -> %s", len(new), folder, path)
    return dict(counts, path=str(path))
