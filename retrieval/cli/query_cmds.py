"""Commands that read a collection: search, explain, classify, info."""

from __future__ import annotations

import sys
from typing import Dict, List

from retrieval.api import (
    DEFAULT_TEMPLATES,
    ROUTES,
    Collection,
    accuracy,
    check_template,
    given_count,
    labels_given,
)
from retrieval.cli.output import (
    SCORE_NOTE,
    print_json,
    printable,
    projector_words,
    self_anchor_words,
    short_path,
    table,
    tuning_words,
)
from retrieval.errors import InputError


def _targets(a, col, modality: str) -> List[str]:
    """auto: items for text queries and queries from a pivot modality; items and texts for queries
    of the items' own modality."""
    if a.target != "auto":
        return [col.modality if a.target == "items" else a.target]
    if hasattr(col, "sharded_manifest"):  # a sharded collection answers for its items only
        return [col.modality]
    if getattr(a, "where", None) is not None:  # a filter names the items' columns: the items only
        return [col.modality]
    return [col.modality, "text"] if modality == col.modality else [col.modality]


def _one_query(a, allow_file: bool):
    """(queries, modality) from exactly one of QUERY, --image, --audio (and --queries for search)."""

    given = {"text": a.query, "image": a.image, "audio": a.audio}
    if allow_file:
        given["file"], given["vectors"] = a.queries, a.vector_file
    present = [m for m, v in given.items() if v is not None]
    if len(present) != 1:
        names = "a text QUERY, --image PATH, --audio PATH" + (", --queries FILE, --vector-file NPY" if allow_file else "")
        raise InputError(f"expected exactly one of: {names}; got {len(present)}")
    m = present[0]
    if m == "vectors":
        return read_vectors(a.vector_file), "vectors"
    if m != "file":
        return [given[m]], m
    try:
        with open(a.queries, encoding="utf-8") as f:
            queries = [line.strip() for line in f if line.strip()]
    except OSError as exc:
        raise InputError(f"expected a readable queries file (one query a line), got {a.queries!r}: {exc}") from exc
    if not queries:
        raise InputError(f"expected at least one query in {a.queries!r}, found none")
    return queries, "text"


def read_vectors(path: str):
    """Query vectors from a .npy file (one vector, or one a row); never unpickled."""
    import numpy as np

    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"expected a .npy file of query vectors (one a row), got {path!r}: {exc}") from exc
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or not len(x) or not np.issubdtype(x.dtype, np.number):
        raise InputError(f"expected a 2-D numeric array of query vectors (one a row) in {path!r}, got shape "
                         f"{x.shape} of {x.dtype}")
    return x


def query_encoders(a) -> Dict[str, str]:
    """--image-encoder / --text-encoder / --audio-encoder given to search or explain: queries of that
    modality are encoded by it and stitched to the collection through its anchors."""
    return {f"{m}_encoder": getattr(a, f"{m}_encoder") for m in ("image", "text", "audio")
            if getattr(a, f"{m}_encoder", None)}


def cmd_search(a) -> int:
    queries, modality = _one_query(a, allow_file=True)
    col = Collection.open(a.index, device=a.device, **query_encoders(a))
    vectors = None
    if modality == "vectors":  # embeddings made elsewhere, of --vector-modality (default: the items')
        vectors, modality = queries, a.vector_modality or col.modality
        queries = [f"{a.vector_file}[{i}]" for i in range(len(vectors))]
    results: Dict[str, list] = {}
    for target in _targets(a, col, modality):
        if vectors is not None:
            results[target] = col.search_vectors(vectors, k=a.k, modality=modality, target=target, route=a.route,
                                                 where=a.where, captions=a.caption_match)
        else:
            results[target] = col.search_many(queries, k=a.k, modality=modality, target=target, route=a.route,
                                              show_progress_bar=a.progress, where=a.where, captions=a.caption_match)
    if not (a.json or a.queries is not None):
        print(SCORE_NOTE)
    for qi, q in enumerate(queries):
        if a.json or a.queries is not None:
            print_json({"query": q, "modality": modality,
                         "results": {t: [h.to_dict() for h in r[qi]] for t, r in results.items()}})
        else:
            for t, r in results.items():
                print(f"{modality} -> {t}: {printable(q)}")
                print(table(r[qi], t))
    return 0


def cmd_explain(a) -> int:
    (query,), modality = _one_query(a, allow_file=False)
    col = Collection.open(a.index, **query_encoders(a))
    for target in _targets(a, col, modality):
        p = col.plan(modality, target, a.route, a.caption_match)
        if a.json:
            print_json(dict(p.to_dict(), query=query, modality=modality, target=target))
        else:
            print(p.explain())
    if not a.json and col.manifest.get("tuning"):
        print(f"settings: {tuning_words(col.manifest['tuning'])}")
    return 0


def cmd_classify(a) -> int:
    labels = labels_given(a.labels)
    templates = [check_template(t) for t in a.template] if a.template else list(DEFAULT_TEMPLATES)
    if a.vector_file and a.files:
        raise InputError(f"expected files or --vector-file to classify, not both; got {len(a.files)} file(s) and "
                         f"{a.vector_file!r}")
    col = Collection.open(a.index, device=a.device)
    files = a.files or None
    if a.vector_file:
        vectors = read_vectors(a.vector_file)
        preds = col.classify_vectors(vectors, labels, templates=templates, k=a.k, abstain=a.abstain)
        names = [f"{a.vector_file}[{i}]" for i in range(len(vectors))]
    else:
        preds = col.classify(files, labels, templates=templates, k=a.k, show_progress_bar=a.progress,
                             abstain=a.abstain)
        names = a.files if files else col.items["path"]
    if not a.json:
        print(preds.about(), file=sys.stderr)
    for name, p in zip(names, preds):
        if a.json:
            print_json({"path": name, **p.to_dict(), "signals": preds.signals})
        else:
            top = ", ".join(f"{printable(lab)} ({pr:.2f})" for lab, pr in zip(p.labels, p.probabilities))
            print(f"{short_path(name, 60):60}  " + (f"none of these (below {a.abstain:g}: {top})" if p.abstained
                                                    else top))
    if files is None and not a.vector_file:
        truth = col.items["label"]
        known = [t for t in truth if t is not None]
        top1, topk = accuracy(preds, truth, 1), accuracy(preds, truth, a.k)
        if top1 is not None:
            inside = sum(t in labels for t in known)
            summary = {"items_with_label": len(known), "labels_in_file": inside, "top1": top1, f"top{a.k}": topk,
                       "chance_top1": 1.0 / len(labels)}
            if a.json:
                print_json({"summary": summary})
            else:
                print(f"accuracy on {len(known)} labelled items: top-1 {top1:.3f}, top-{a.k} {topk:.3f} "
                      f"(chance top-1 {1.0 / len(labels):.3f})")
    return 0


def cmd_info(a) -> int:
    info = Collection.open(a.index, verify=not a.no_verify).info()
    if a.json:
        print_json(info)
        return 0
    c, e, pr = info["counts"], info["encoders"], info["projector"]
    print(f"collection   {info['path']} (format v{info['format_version']}, created {info['created']})")
    print("encoders     " + ", ".join(f"{m} {x['spec']} ({x['dim']}-d)" for m, x in e.items()))
    print(f"anchors      {given_count(info['anchors'])} {info['modality']}-text pairs from {info['anchors']['source']} "
          f"(sha256 {info['anchors']['content_hash'][:12]}…)")
    bank = info["anchors"].get("background")
    if bank:
        print(f"background   {bank['count']} pairs from {bank['source']} (sha256 {bank['content_hash'][:12]}…), "
              f"their score added with weight {bank['weight']:g}")
    style = info.get("style")
    if style:
        print(f"style        {style['method']} (lambda {style['lambda']:g}) learned from {style['views']} views of "
              f"{style['concepts']} concepts; applied to {style['modality']} before relativising")
    for pv in info["pivots"]:
        print(f"pivot        {pv['count']} {'-'.join(pv['modalities'])} pairs from {pv['source']} "
              f"({projector_words(info, pv)})")
    print(f"projector    {pr['kind']} {projector_words(info)} centred={pr.get('center', False)}"
          + (f" whitened (lambda {pr['whiten']:g})" if pr.get("whiten") else ""))
    if info["anchors"].get("self"):
        print(f"self-anchors {self_anchor_words(info['anchors']['self'])}")
    if info.get("tuning"):
        print(f"tuning       {tuning_words(info['tuning'])}")
    rarity = info.get("anchor_rarity")
    if rarity:
        print("rarity       " + (f"anchors weighed by their rarity among {rarity['items']} items (power {rarity['power']:g}, "
                                 f"largest weight {rarity['max_weight']:g})" if rarity["applied"]
                                 else f"asked for (power {rarity['power']:g}), left out: {rarity['why']}"))
    lab = info.get("labels")
    if lab:
        print(f"labels       {lab['count']} {lab['names']} classes of the image encoder's head, weight {lab['weight']:g} "
              f"(route relative+labels)")
    print("indexes      " + ", ".join(f"{n}: {s['backend']}{':' + s['factory'] if 'factory' in s else ''}" for n, s in info["indexes"].items()))
    print("columns      " + ", ".join(f"{x['name']} ({x['type']})" for x in info["columns"]) + "  (for --where)")
    print(f"counts       {c['items']} {info['modality']} items, {c['texts']} texts ({c['corpus_captions']} corpus captions), {c['skipped']} skipped")
    if "shards" in info:
        print(f"shards       {info['shards']['count']} (up to {info['shards']['shard_size']} items each)")
    print(f"size         {info['bytes_on_disk'] / 1e6:.1f} MB on disk")
    return 0


def add_query_encoder_options(sp) -> None:
    """--image-encoder / --text-encoder / --audio-encoder: queries encoded by another encoder, stitched."""
    for m in ("image", "text", "audio"):
        sp.add_argument(f"--{m}-encoder", default=None, metavar="SPEC",
                        help=f"encode {m} queries with this encoder instead of the collection's: they reach it "
                             f"through its anchors, encoded by both (zero-shot stitching; the anchors' files must "
                             f"be readable); for a vectors:NAME side, NAME itself encodes them in the side's own "
                             f"space")


def add_parsers(sub, common) -> None:
    """The subcommands of this module, on ``sub``; ``common(sp)`` adds the options every command shares."""
    targets = ["auto", "items", "image", "audio", "text"]
    s = sub.add_parser("search", help="search a collection with text, an image, a sound, or a file of queries")
    s.add_argument("index", help="collection folder")
    s.add_argument("query", nargs="?", help="text query")
    s.add_argument("--image", help="image query (path)")
    s.add_argument("--audio", help="sound query (path: wav, mp3, ogg, flac, ...)")
    s.add_argument("--queries", help="file with one text query a line; prints JSON Lines")
    s.add_argument("--vector-file", metavar="NPY", help="query vectors made elsewhere (.npy, one a row), e.g. for a "
                   "collection built with --image-encoder vectors:NAME")
    s.add_argument("--vector-modality", choices=("text", "image", "audio"), default=None,
                   help="what the --vector-file vectors are (default: the collection's items' modality)")
    s.add_argument("-k", "--k", type=int, default=10)
    s.add_argument("--target", choices=targets, default="auto",
                   help="what to return: the collection's items, or texts (corpus and anchor captions); auto = items, "
                        "plus texts for a query of the items' own modality")
    s.add_argument("--route", choices=list(ROUTES), default=None,
                   help="force a route (default: the planner's choice; see 'retrieval explain')")
    s.add_argument("--json", action="store_true", help="one JSON object per query")
    s.add_argument("--where", default=None, metavar="FILTER",
                   help="keep only results whose stored columns match, e.g. \"label = 'cat' AND year >= 2020\" "
                        "(=, !=, <, <=, >, >=, IN (...), LIKE, IS [NOT] NULL, AND, OR, NOT; the corpus table's "
                        "other columns are stored for this); applied before the top k is cut")
    common(s)
    s.set_defaults(func=cmd_search)

    x = sub.add_parser("explain", help="show the route a query would take and the alternatives, without running it")
    x.add_argument("index")
    x.add_argument("query", nargs="?", help="text query (only its modality matters)")
    x.add_argument("--image", help="image query (path)")
    x.add_argument("--audio", help="sound query (path)")
    x.add_argument("--target", choices=targets, default="auto")
    x.add_argument("--route", choices=list(ROUTES), default=None, help="explain a forced route")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_explain)
    for sp in (s, x):
        add_query_encoder_options(sp)
        sp.add_argument("--no-caption-match", dest="caption_match", action="store_false",
                        help="text queries find items cross-modally only: without it, an item whose own caption "
                             "the query repeats (or names every word of) comes first (docs/cli.md)")

    c = sub.add_parser("classify", help="ASIF zero-shot classification of images or sounds (or of the collection's items)")
    c.add_argument("index")
    c.add_argument("files", nargs="*", help="files of the collection's modality (images or sounds); none = classify "
                                             "the collection's own items and score their labels")
    c.add_argument("--vector-file", metavar="NPY", help="inputs embedded elsewhere by the items' encoder (.npy, one a "
                   "row), e.g. for a collection built with --image-encoder vectors:NAME")
    c.add_argument("--labels", required=True, help="a text file, one label a line, or labels separated by commas "
                   "('cat, dog, bird'; a file of that name wins)")
    c.add_argument("--template", action="append", help="prompt template with {} (repeatable); default: a few generic ones")
    c.add_argument("-k", "--k", type=int, default=5)
    c.add_argument("--abstain", type=float, default=None, metavar="P",
                   help="answer 'none of these' when the top label's probability is below P (0 to 1; the "
                        "probabilities are calibrated: results/categories)")
    c.add_argument("--json", action="store_true")
    common(c)
    c.set_defaults(func=cmd_classify)

    i = sub.add_parser("info", help="what a collection was built with, and its sizes")
    i.add_argument("index")
    i.add_argument("--json", action="store_true")
    i.add_argument("--no-verify", action="store_true", help="skip checksum verification (faster on large collections)")
    i.set_defaults(func=cmd_info)
