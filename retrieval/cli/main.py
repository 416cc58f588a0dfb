"""Command line: a thin caller of the Python API. ``retrieval --help`` lists the subcommands."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

from retrieval.api import (
    DEFAULT_BACKGROUND_WEIGHT,
    DEFAULT_CENTER,
    DEFAULT_ENCODERS,
    DEFAULT_IMAGE_P,
    DEFAULT_K,
    DEFAULT_LABEL_WEIGHT,
    DEFAULT_P,
    DEFAULT_TEMPLATES,
    DEFAULT_VIEWS_K,
    DEFAULT_VIEWS_LABEL_WEIGHT,
    DEFAULT_VIEWS_P,
    DEFAULT_WHITEN,
    ROUTES,
    SELECTORS,
    BuildOptions,
    Collection,
    accuracy,
    add_items,
    build_collection,
    check_template,
    delete_items,
    describe_encoders,
    read_labels,
    reanchor,
    reencode,
)
from retrieval.errors import InputError, RetrievalError
from retrieval.store.format import read_manifest
from retrieval.store.sharded import read_sharded_manifest


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _printable(s: Optional[str]) -> str:
    """A file name or caption as it may be printed: control characters (a newline that would break
    the table, an ANSI escape that would reach the terminal) are shown escaped, as Python writes them."""
    s = "" if s is None else str(s)
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _short(s: Optional[str], width: int) -> str:
    s = _printable(s)
    return s if len(s) <= width else s[: width - 1] + "…"


def _short_path(s: Optional[str], width: int) -> str:
    """Paths keep their end, where the file name is."""
    s = _printable(s)
    return s if len(s) <= width else "…" + s[-(width - 1):]


# Printed once above search results: what the number is, and why it may pass 1.
SCORE_NOTE = ("score: similarity of the query's and the result's relative vectors, higher is closer; a route that "
              "adds the background bank's or the label bridge's score (weighted) can pass 1; tiebrk: the dense "
              "cosine that orders equal scores (docs/how-it-works.md, 'Scores')")


def _table(hits, target: str) -> str:
    items = target != "text"
    lines = [f"  {'rank':>4}  {'score':>7}  {'tiebrk':>7}  {'id':>6}  " + ("path / caption" if items else "caption (source)")]
    for h in hits:
        sec = "" if h.secondary != h.secondary else f"{h.secondary:7.4f}"  # NaN check
        what = (f"{_short_path(h.path, 50)}  {_short(h.caption, 40)}" if items
                else f"{_short(h.caption, 70)}  ({h.source})")
        lines.append(f"  {h.rank:>4}  {h.score:7.4f}  {sec:>7}  {h.id:>6}  {what}")
    return "\n".join(lines)


def cmd_build(a) -> int:
    if a.ray is not None:
        return _build_on_ray(a)
    if a.restart or a.shard_size is not None or a.workers is not None:
        raise InputError("expected --shard-size, --workers and --restart only with --ray (a distributed build), "
                         "got them without it")
    path = build_collection(a.corpus, a.anchors, a.out, BuildOptions.from_namespace(a))
    m = read_manifest(path, verify=False)
    c = m["counts"]
    pivots = "".join(f", {pv['count']} {pv['modalities'][0]}-text pivot anchors" for pv in m.get("pivots", []))
    print(f"built {path}: {c['items']} {m['items']['modality']} items, {c['texts']} texts, {c['anchors']} anchors"
          f"{pivots}, {c['skipped']} skipped (k={m['projector']['k']}, p={m['projector']['p']})")
    for s in m.get("skipped", [])[:10]:
        print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    t = m.get("timings", {})
    if t:
        print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in t.items()))
    return 0


def _given_options(a) -> Dict:
    """The build options given on a reanchor or reencode command line (options not given are absent
    from the parsed arguments, so the collection's own settings stand for them)."""
    fields = {f.name for f in dataclasses.fields(BuildOptions)}
    changes = {k: v for k, v in vars(a).items() if k in fields}
    changes.update(show_progress_bar=a.progress, device=a.device)
    return changes


def cmd_reanchor(a) -> int:
    changes = _given_options(a)
    t = time.perf_counter()
    path = reanchor(a.folder, a.anchors, a.out, **changes)
    m = read_manifest(path, verify=False)
    c = m["counts"]
    print(f"reanchored {a.folder} -> {path} in {time.perf_counter() - t:.1f} s: {c['items']} {m['items']['modality']} "
          f"items against {c['anchors']} anchors (k={m['projector']['k']}, p={m['projector']['p']}); no item was "
          f"encoded")
    return 0


def cmd_reencode(a) -> int:
    changes = _given_options(a)
    t = time.perf_counter()
    path = reencode(a.folder, a.out, chunk=a.chunk, restart=a.restart, **changes)
    m = read_manifest(path, verify=False)
    r = m["reencoded"]
    print(f"reencoded {a.folder} -> {path} in {time.perf_counter() - t:.1f} s: {m['counts']['items']} "
          f"{m['items']['modality']} items, " + ", ".join(f"{x} {r['from'][x]} -> {r['to'][x]}" for x in r["to"]))
    return 0


def cmd_add(a) -> int:
    duplicates = "allow" if a.allow_duplicates else "skip" if a.skip_duplicates else "refuse"
    res = add_items(a.index, a.corpus, batch_size=a.batch_size, show_progress_bar=a.progress, device=a.device,
                    duplicates=duplicates)
    ids = res["ids"]
    print(f"added {res['added']} items to {a.index} (ids {ids[0]}..{ids[-1]}), {len(res['skipped'])} skipped")
    for s in res["skipped"][:10]:
        print(f"  skipped {s['path']}: {s['reason']}", file=sys.stderr)
    return 0


def cmd_delete(a) -> int:
    print(f"deleted {delete_items(a.index, a.ids)['deleted']} items from {a.index}")
    return 0


def _build_on_ray(a) -> int:
    from retrieval.distributed import DEFAULT_SHARD_SIZE, build_sharded

    path = build_sharded(a.corpus, a.anchors, a.out, BuildOptions.from_namespace(a), address=a.ray or None,
                         shard_size=a.shard_size or DEFAULT_SHARD_SIZE, workers=a.workers, restart=a.restart)
    m = read_sharded_manifest(path)
    c = m["counts"]
    print(f"built {path}: {c['items']} {m['items']['modality']} items in {c['shards']} shard(s), "
          f"{c['skipped']} skipped (k={m['projector']['k']}, p={m['projector']['p']})")
    return 0


def cmd_serve(a) -> int:
    from retrieval.serve.server import serve

    for flag, value, least in (("--batch-wait-ms", a.batch_wait_ms, 0), ("--batch-size", a.batch_size, 1),
                               ("--queue", a.queue, 1), ("--dense-cache-mb", a.dense_cache_mb, 0),
                               ("--max-connections", a.max_connections, 1)):
        if not value >= least:
            raise InputError(f"expected {flag} to be at least {least}, got {value}")
    if not a.reload_every >= 0:
        raise InputError(f"expected --reload-every to be 0 (never) or a number of seconds, got {a.reload_every}")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {a.host}: anyone who can reach this address can query the collections",
              file=sys.stderr)
    serve(a.index, host=a.host, port=a.port, device=a.device, shard_actors=a.ray, query_encoders=_query_encoders(a),
          limits={"max_body_bytes": a.max_body_mb * 1024 * 1024, "max_k": a.max_k, "request_timeout_s": a.timeout,
                  "max_connections": a.max_connections},
          reload_s=a.reload_every,
          batching={"max_wait_ms": a.batch_wait_ms, "max_batch": a.batch_size, "max_queue": a.queue},
          dense_cache_mb=a.dense_cache_mb)
    return 0


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
    from retrieval.errors import InputError

    given = {"text": a.query, "image": a.image, "audio": a.audio}
    if allow_file:
        given["file"] = a.queries
    present = [m for m, v in given.items() if v is not None]
    if len(present) != 1:
        names = "a text QUERY, --image PATH, --audio PATH" + (", --queries FILE" if allow_file else "")
        raise InputError(f"expected exactly one of: {names}; got {len(present)}")
    m = present[0]
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


def _query_encoders(a) -> Dict[str, str]:
    """--image-encoder / --text-encoder / --audio-encoder given to search or explain: queries of that
    modality are encoded by it and stitched to the collection through its anchors."""
    return {f"{m}_encoder": getattr(a, f"{m}_encoder") for m in ("image", "text", "audio")
            if getattr(a, f"{m}_encoder", None)}


def cmd_search(a) -> int:
    queries, modality = _one_query(a, allow_file=True)
    col = Collection.open(a.index, device=a.device, **_query_encoders(a))
    results: Dict[str, list] = {}
    for target in _targets(a, col, modality):
        results[target] = col.search_many(queries, k=a.k, modality=modality, target=target, route=a.route,
                                          show_progress_bar=a.progress, where=a.where)
    if not (a.json or a.queries is not None):
        print(SCORE_NOTE)
    for qi, q in enumerate(queries):
        if a.json or a.queries is not None:
            _print_json({"query": q, "modality": modality,
                         "results": {t: [h.to_dict() for h in r[qi]] for t, r in results.items()}})
        else:
            for t, r in results.items():
                print(f"{modality} -> {t}: {_printable(q)}")
                print(_table(r[qi], t))
    return 0


def cmd_explain(a) -> int:
    (query,), modality = _one_query(a, allow_file=False)
    col = Collection.open(a.index, **_query_encoders(a))
    for target in _targets(a, col, modality):
        p = col.plan(modality, target, a.route)
        if a.json:
            _print_json(dict(p.to_dict(), query=query, modality=modality, target=target))
        else:
            print(p.explain())
    return 0


def cmd_classify(a) -> int:
    labels = read_labels(a.labels)
    templates = [check_template(t) for t in a.template] if a.template else list(DEFAULT_TEMPLATES)
    col = Collection.open(a.index, device=a.device)
    files = a.files or None
    preds = col.classify(files, labels, templates=templates, k=a.k, show_progress_bar=a.progress)
    names = a.files if files else col.items["path"]
    for name, p in zip(names, preds):
        if a.json:
            _print_json({"path": name, **p.to_dict()})
        else:
            print(f"{_short_path(name, 60):60}  " + ", ".join(f"{_printable(lab)} ({s:.3f})"
                                                               for lab, s in zip(p.labels, p.scores)))
    if files is None:
        truth = col.items["label"]
        known = [t for t in truth if t is not None]
        top1, topk = accuracy(preds, truth, 1), accuracy(preds, truth, a.k)
        if top1 is not None:
            inside = sum(t in labels for t in known)
            summary = {"items_with_label": len(known), "labels_in_file": inside, "top1": top1, f"top{a.k}": topk,
                       "chance_top1": 1.0 / len(labels)}
            if a.json:
                _print_json({"summary": summary})
            else:
                print(f"accuracy on {len(known)} labelled items: top-1 {top1:.3f}, top-{a.k} {topk:.3f} "
                      f"(chance top-1 {1.0 / len(labels):.3f})")
    return 0


def cmd_info(a) -> int:
    info = Collection.open(a.index, verify=not a.no_verify).info()
    if a.json:
        _print_json(info)
        return 0
    c, e, pr = info["counts"], info["encoders"], info["projector"]
    print(f"collection   {info['path']} (format v{info['format_version']}, created {info['created']})")
    print("encoders     " + ", ".join(f"{m} {x['spec']} ({x['dim']}-d)" for m, x in e.items()))
    print(f"anchors      {info['anchors']['count']} {info['modality']}-text pairs from {info['anchors']['source']} "
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
              f"(k={pv['k']}, p={pv.get('p', info['projector']['p'])})")
    print(f"projector    {pr['kind']} k={pr['k']} p={pr['p']} centred={pr.get('center', False)}"
          + (f" whitened (lambda {pr['whiten']:g})" if pr.get("whiten") else ""))
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


def cmd_eval(a) -> int:
    from retrieval.evaluation import run_suite

    folder, _ = run_suite(a.suite, a.out, show_progress_bar=a.progress,
                          command=f"retrieval eval --suite {a.suite}" + (f" --out {a.out}" if a.out != "results" else "")
                          + (f" --runtime {a.runtime}" if getattr(a, "runtime", None) else ""))
    print(f"wrote {folder / 'README.md'}")
    return 0


def cmd_demo(a) -> int:
    from retrieval.cli.demo import run_demo

    return run_demo(out=a.out, data=a.data, limit=a.limit, show_progress_bar=a.progress)


def _settings(sp, defaults: bool = True) -> None:
    """The options a build and a reanchor share: relative vectors, indexes, labels, writing. Without
    ``defaults`` an option not given is absent from the parsed arguments (reanchor keeps what the
    collection has for those)."""

    def d(value):
        return value if defaults else argparse.SUPPRESS

    sp.add_argument("-k", "--k", type=int, default=d(None),
                    help=f"anchors kept per vector (default {DEFAULT_K}, or {DEFAULT_VIEWS_K} when the anchors draw "
                         f"concepts several ways; at most the number of anchors)")
    sp.add_argument("-p", "--p", type=float, default=d(None),
                    help=f"power applied to kept similarities (default {DEFAULT_IMAGE_P} for images, {DEFAULT_P} for "
                         f"sounds, or {DEFAULT_VIEWS_P} with views)")
    sp.add_argument("--kind", choices=["asif", "cosine"], default=d("asif"), help="relative representation (default asif)")
    sp.add_argument("--center", action=argparse.BooleanOptionalAction, default=d(DEFAULT_CENTER),
                    help=f"centre embeddings on their anchors' mean before cosine (default {DEFAULT_CENTER})")
    sp.add_argument("--whiten", type=float, default=d(None), metavar="LAMBDA",
                    help=f"shrinkage-whiten both sides on their anchors' covariance before the cosine, with strength "
                         f"LAMBDA (0: off; default {DEFAULT_WHITEN:g} for images with one picture per caption, off "
                         f"with views and for sounds)")
    sp.add_argument("--background", default=d(None), metavar="emoji|none|PATH",
                    help="a background anchor bank relativised beside the anchors, its score added with "
                         "--background-weight: 'emoji' (every Noto emoji with its name, rendered and encoded once, "
                         "cached), 'none', or an anchor table or folder of your own of the same modalities; default "
                         "emoji for image anchors, none for sounds "
                         "($RETRIEVAL_BACKGROUND=none turns that default off)")
    sp.add_argument("--background-weight", type=float, default=d(None), metavar="BETA",
                    help=f"weight of the background bank's score (default {DEFAULT_BACKGROUND_WEIGHT:g})")
    sp.add_argument("--index", default=d("exact"), help="exact (default), inverted (postings per anchor, float16 weights), inverted:float32, faiss, or faiss:FACTORY such as faiss:HNSW32")
    sp.add_argument("--dense-index", default=d(None), metavar="auto|FACTORY",
                    help="FAISS index for the dense routes into the items (image->image, translation): 'auto' picks "
                         "the most exact of Flat / HNSW32 / IVF,Flat / IVF,PQ within --max-memory and --max-query-ms; "
                         "default: exact search")
    sp.add_argument("--max-memory", default=d(None), help="memory budget for --dense-index auto, e.g. 4G or 500M")
    sp.add_argument("--max-query-ms", type=float, default=d(None), help="latency budget for --dense-index auto (ms)")
    sp.add_argument("--dense-rerank", type=int, default=d(None), metavar="R",
                    help="with an explicit --dense-index FACTORY: ask it for R x the candidates and re-score them "
                         "exactly against the stored embeddings (auto does this for IVF-PQ)")
    sp.add_argument("--labels", action=argparse.BooleanOptionalAction, default=d(None),
                    help="store each image's label vector (its encoder's classifier head naming what it shows, "
                         "placed in text space) for the relative+labels route (default: when the image encoder has "
                         "a classifier head)")
    sp.add_argument("--label-weight", type=float, default=d(None),
                    help=f"weight of the label bridge's cosine added to the ASIF score (default {DEFAULT_LABEL_WEIGHT}, or "
                         f"{DEFAULT_VIEWS_LABEL_WEIGHT} when the anchors draw concepts several ways)")
    sp.add_argument("--n-anchors", type=int, default=d(None), metavar="N",
                    help="keep N of the anchor set's pairs (an anchor budget), chosen by --select")
    sp.add_argument("--select", choices=list(SELECTORS), default=d("random"),
                    help="how --n-anchors chooses: random (seeded), fps (farthest point), kmeans (nearest to "
                         "centroids), coverage (where the corpus is); default random")
    sp.add_argument("--overwrite", action="store_true", default=d(False), help="replace an existing collection (atomically)")
    sp.add_argument("--cache-dir", default=d(None), help="anchor embedding cache (default $RETRIEVAL_CACHE or ~/.cache/retrieval; '' disables)")
    sp.add_argument("--batch-size", type=int, default=d(32))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retrieval", description="Cross-modal retrieval with encoders never trained together.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, device=True):
        sp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bars (default: when stderr is a terminal)")
        if device:
            sp.add_argument("--device", default="cpu", help="torch device for encoders: cpu, cuda, auto (default cpu)")
        sp.add_argument("--runtime", choices=("auto", "torch", "onnx", "openvino"), default=None,
                        help="where the packaged encoders run (default $RETRIEVAL_RUNTIME, else auto: on a CPU, "
                             "images on ONNX Runtime, text and sound on OpenVINO when installed, else torch)")

    b = sub.add_parser("build", help="build a collection from a corpus and an anchor set",
                       epilog=f"encoder specs: {describe_encoders()}")
    b.add_argument("--corpus", required=True,
                   help="folder of images or sounds (recursive) or .parquet/.csv with an image/audio/path column")
    b.add_argument("--anchors", required=True,
                   help="parallel anchors pairing the corpus's modality with text: .parquet/.csv with image (or audio) "
                        "+ caption columns, or a folder with sidecar .txt captions")
    b.add_argument("--pivot-anchors", action="append", metavar="PATH",
                   help="anchors pairing another modality with text (e.g. sounds and their names for an image "
                        "collection): queries of that modality then reach the collection through text (repeatable)")
    b.add_argument("--out", required=True, help="output collection folder, e.g. indexes/NAME")
    b.add_argument("--image-encoder", default=DEFAULT_ENCODERS["image"])
    b.add_argument("--text-encoder", default=DEFAULT_ENCODERS["text"])
    b.add_argument("--audio-encoder", default=DEFAULT_ENCODERS["audio"])
    _settings(b)
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="build on Ray: encode on a cluster's workers and write a sharded collection. ADDRESS: "
                        "'auto' (the cluster this machine joined), host:port, or none for a local cluster")
    b.add_argument("--shard-size", type=int, default=None, help="items per shard with --ray (default 100000)")
    b.add_argument("--workers", type=int, default=None,
                   help="encoding actors with --ray (default: one per GPU of the cluster, else one per CPU)")
    b.add_argument("--restart", action="store_true",
                   help="with --ray: discard an interrupted build of other settings instead of refusing")
    common(b)
    b.set_defaults(func=cmd_build)

    ad = sub.add_parser("add", help="encode new files and append them to a collection (existing items are not re-encoded)")
    ad.add_argument("index", help="collection folder")
    ad.add_argument("--corpus", required=True, help="folder or .parquet/.csv of new files, of the collection's modality")
    ad.add_argument("--batch-size", type=int, default=32)
    dup = ad.add_mutually_exclusive_group()
    dup.add_argument("--skip-duplicates", action="store_true",
                     help="add only the files whose content the collection does not have yet (default: refuse "
                          "the whole add when any file is already there)")
    dup.add_argument("--allow-duplicates", action="store_true",
                     help="add files even when the collection already has their content")
    common(ad)
    ad.set_defaults(func=cmd_add)

    de = sub.add_parser("delete", help="remove items (and their captions) from a collection by id")
    de.add_argument("index", help="collection folder")
    de.add_argument("ids", nargs="+", type=int, help="item ids, as search prints them")
    de.set_defaults(func=cmd_delete)

    ra = sub.add_parser("reanchor", help="recompute a collection against new anchors without encoding its corpus again",
                        epilog="Options not given keep the collection's index, dense index and label vectors; k and p "
                               "not given follow the new anchors, as in a fresh build.")
    ra.add_argument("folder", metavar="INDEX", help="collection folder")  # --index is the index backend here
    ra.add_argument("--anchors", required=True,
                    help="the new parallel anchors (same modalities as the collection's), as for 'build --anchors'")
    ra.add_argument("--out", default=None, help="write the result here (default: replace the collection, atomically)")
    _settings(ra, defaults=False)
    common(ra)
    ra.set_defaults(func=cmd_reanchor)

    re_ = sub.add_parser("reencode", help="encode a collection's corpus again with another encoder (chunked, "
                                           "resumable), then rewrite it atomically",
                         epilog="Until it finishes, the old collection answers as before; queries by the new encoder "
                                "reach it with 'search --image-encoder SPEC'.")
    re_.add_argument("folder", metavar="INDEX", help="collection folder")
    for m in ("image", "text", "audio"):
        re_.add_argument(f"--{m}-encoder", default=argparse.SUPPRESS, metavar="SPEC",
                         help=f"the new {m} encoder (encoders not named are kept)")
    re_.add_argument("--out", default=None, help="write the result here (default: replace the collection, atomically)")
    re_.add_argument("--chunk", type=int, default=2048, help="items encoded and saved at a time (default 2048)")
    re_.add_argument("--restart", action="store_true", help="discard an interrupted reencode of other settings")
    _settings(re_, defaults=False)
    common(re_)
    re_.set_defaults(func=cmd_reencode)

    sv = sub.add_parser("serve", help="HTTP API and web page over one or more collections (FastAPI)")
    sv.add_argument("index", nargs="+", help="collection folders; each is served under its folder name")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-body-mb", type=int, default=10, help="largest request body or upload (default 10 MB)")
    sv.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    sv.add_argument("--timeout", type=float, default=30.0, help="seconds before a request is answered 503 (default 30)")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                    help="gather concurrent searches for at most this long and answer them together "
                         "(default 5; 0: one at a time)")
    sv.add_argument("--batch-size", type=int, default=32, help="most searches answered together (default 32)")
    sv.add_argument("--queue", type=int, default=256,
                    help="most searches waiting; beyond it a request is answered 503 with Retry-After (default 256)")
    sv.add_argument("--max-connections", type=int, default=512, metavar="N",
                    help="most requests in flight at once; beyond it a request is answered 503 (JSON, with "
                         "Retry-After) at once; open connections, idle ones included, are capped at twice it "
                         "(default 512: twice --queue's default)")
    sv.add_argument("--dense-cache-mb", type=float, default=128.0, metavar="MB",
                    help="memory a collection may keep for items' dense relative vectors, which break ties and are "
                         "otherwise recomputed for every query (default 128; 0 keeps none)")
    sv.add_argument("--reload-every", type=float, default=2.0, metavar="SECONDS",
                    help="look for collections rewritten on disk (build, add, reanchor, reencode) at most this "
                         "often, and reopen them while the old ones answer (default 2; 0: never)")
    sv.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="hold each shard of a sharded collection in a Ray actor (on the cluster at ADDRESS, or a "
                         "local one) instead of in this process")
    common(sv)
    sv.set_defaults(func=cmd_serve)

    targets = ["auto", "items", "image", "audio", "text"]
    s = sub.add_parser("search", help="search a collection with text, an image, a sound, or a file of queries")
    s.add_argument("index", help="collection folder")
    s.add_argument("query", nargs="?", help="text query")
    s.add_argument("--image", help="image query (path)")
    s.add_argument("--audio", help="sound query (path: wav, mp3, ogg, flac, ...)")
    s.add_argument("--queries", help="file with one text query a line; prints JSON Lines")
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
    for sp in (s, x, sv):
        for m in ("image", "text", "audio"):
            sp.add_argument(f"--{m}-encoder", default=None, metavar="SPEC",
                            help=f"encode {m} queries with this encoder instead of the collection's: they reach it "
                                 f"through its anchors, encoded by both (zero-shot stitching; the anchors' files must "
                                 f"be readable)")

    c = sub.add_parser("classify", help="ASIF zero-shot classification of images or sounds (or of the collection's items)")
    c.add_argument("index")
    c.add_argument("files", nargs="*", help="files of the collection's modality (images or sounds); none = classify "
                                             "the collection's own items and score their labels")
    c.add_argument("--labels", required=True, help="text file, one label a line")
    c.add_argument("--template", action="append", help="prompt template with {} (repeatable); default: a few generic ones")
    c.add_argument("-k", "--k", type=int, default=5)
    c.add_argument("--json", action="store_true")
    common(c)
    c.set_defaults(func=cmd_classify)

    i = sub.add_parser("info", help="what a collection was built with, and its sizes")
    i.add_argument("index")
    i.add_argument("--json", action="store_true")
    i.add_argument("--no-verify", action="store_true", help="skip checksum verification (faster on large collections)")
    i.set_defaults(func=cmd_info)

    from retrieval.evaluation import SUITES

    e = sub.add_parser("eval", help="run an evaluation suite on real offline data; writes results/NAME/",
                       epilog="suites: " + "; ".join(f"{s.name}: {s.summary}" for s in SUITES.values()))
    e.add_argument("--suite", required=True, help="one of: " + ", ".join(SUITES))
    e.add_argument("--out", default="results", help="results folder (default results/)")
    common(e, device=False)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="build the embedded emoji demo offline and run a few queries")
    d.add_argument("--out", default="indexes/emoji-demo")
    d.add_argument("--data", default="indexes/.emoji-data", help="where the rendered demo data goes")
    d.add_argument("--limit", type=int, default=None, help="use only N concepts (quick look)")
    common(d, device=False)
    d.set_defaults(func=cmd_demo)
    return p


def _quiet_model_loading() -> None:
    """transformers draws a bar for every checkpoint it loads; the CLI shows its own bars instead."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse a command line; positional arguments may come after options (``classify IDX --labels
    L a.png b.png``): argparse alone stops filling a ``FILES...`` argument at the first option and
    calls the rest unrecognised, so a subcommand with arguments left over is parsed again intermixed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        again = sub.parse_intermixed_args(argv[argv.index(args.command) + 1:])
        again.verbose, again.command = args.verbose, args.command
        args = again
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command in ("build", "add", "search", "classify", "demo", "eval", "serve") and not args.verbose:
        _quiet_model_loading()
    saved = os.environ.get("RETRIEVAL_RUNTIME")
    if getattr(args, "runtime", None):  # read where encoders are loaded (retrieval/encoders/runtime.py)
        os.environ["RETRIEVAL_RUNTIME"] = args.runtime
    try:
        return args.func(args)
    except RetrievalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written to the output", file=sys.stderr)
        return 130
    finally:  # main() may be called in-process (tests, notebooks): leave the environment as found
        if saved is None:
            os.environ.pop("RETRIEVAL_RUNTIME", None)
        else:
            os.environ["RETRIEVAL_RUNTIME"] = saved


if __name__ == "__main__":
    sys.exit(main())
