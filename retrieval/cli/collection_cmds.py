"""Commands that write collections: build, add, delete, reanchor, reencode."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Dict

from retrieval.api import (
    DEFAULT_BACKGROUND_WEIGHT,
    DEFAULT_CENTER,
    DEFAULT_ENCODERS,
    DEFAULT_IMAGE_P,
    DEFAULT_K,
    DEFAULT_LABEL_WEIGHT,
    DEFAULT_P,
    DEFAULT_VIEWS_K,
    DEFAULT_VIEWS_LABEL_WEIGHT,
    DEFAULT_VIEWS_P,
    DEFAULT_WHITEN,
    SELECTORS,
    BuildOptions,
    add_items,
    anchor_packs,
    build_collection,
    delete_items,
    describe_encoders,
    prepare_anchors,
    reanchor,
    reencode,
)
from retrieval.cli.output import anchor_count_words, projector_words
from retrieval.errors import InputError
from retrieval.store.format import read_manifest
from retrieval.store.sharded import read_sharded_manifest


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
    print(f"built {path}: {c['items']} {m['items']['modality']} items, {c['texts']} texts, {anchor_count_words(m)}"
          f"{pivots}, {c['skipped']} skipped ({projector_words(m)})")
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
          f"items against {anchor_count_words(m)} ({projector_words(m)}); no item was "
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
                    duplicates=duplicates, captions_from=a.captions_from)
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
          f"{c['skipped']} skipped ({projector_words(m)})")
    return 0


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
    sp.add_argument("--tune", action="store_true", default=d(False),
                    help="choose k, p, centring and whitening on concept folds of your own anchor pairs (kept only "
                         "where they beat the defaults there by more than the folds' noise; the folds' table goes "
                         "into the manifest, shown by info). For encoders other than the packaged ones")
    sp.add_argument("--self-anchors", action=argparse.BooleanOptionalAction, default=d(None),
                    help="the corpus's captioned items join the anchors, the given anchors moved to the corpus's "
                         "domain first, unless validation on those captions says it loses (default: on for images, "
                         "off for sounds; reanchor keeps what the collection was built with)")
    sp.add_argument("--anchor-rarity", type=float, default=d(None), metavar="POWER",
                    help="weigh each anchor by its rarity among the corpus items' nearest anchors (an inverse document "
                         "frequency) to this power: for anchors of another domain than the corpus; 1 is the measured "
                         "setting, 0 (the default) is off; corpora under 200 items are left unweighted "
                         "(docs/research/README.md; reanchor keeps what the collection was built with)")
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


def cmd_anchors(a) -> int:
    import json

    if a.action == "list":
        packs = anchor_packs()
        if a.json:
            print(json.dumps(packs, indent=1))
            return 0
        for p in packs:
            state = (f"{p['pairs']} pairs, made" if "pairs" in p else "not made yet" if not p["missing"]
                     else f"cannot be made here: missing {', '.join(p['missing'])}")
            print(f"pack:{p['name']:<12} {p['modality']:<6} {state}\n    {p['description']}")
        return 0
    if not a.sources:
        raise InputError("expected at least one anchor source to prepare, e.g. 'retrieval anchors prepare pack:emoji'")
    got = prepare_anchors(a.sources, show_progress_bar=a.progress)
    print(json.dumps(got) if a.json else f"{got['source']}: {got['pairs']} {got['modality']}-text pairs "
                                          f"({got['anchors']} anchors), ready")
    return 0


def _anchors_parser(sub) -> None:
    an = sub.add_parser("anchors", help="anchor sources: list the packs, or make and check a source before a build")
    an.add_argument("action", choices=("list", "prepare"))
    an.add_argument("sources", nargs="*", metavar="SOURCE", help="for prepare: as --anchors takes them (combined)")
    an.add_argument("--json", action="store_true")
    an.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bars (default: when stderr is a terminal)")
    an.set_defaults(func=cmd_anchors)


def add_parsers(sub, common) -> None:
    """The subcommands of this module, on ``sub``; ``common(sp)`` adds the options every command shares."""
    b = sub.add_parser("build", help="build a collection from a corpus and an anchor set",
                       epilog=f"encoder specs: {describe_encoders()}")
    b.add_argument("--corpus", required=True,
                   help="folder of images or sounds (recursive) or .parquet/.csv with an image/audio/path column")
    b.add_argument("--anchors", required=True, action="append", metavar="SOURCE",
                   help="parallel anchors pairing the corpus's modality with text: .parquet/.csv/.arrow with image (or "
                        "audio) + caption columns, a folder with sidecar .txt captions, pack:NAME ('retrieval anchors "
                        "list'), hf:DATASET[:SPLIT][#image=COL,caption=COL] or a folder saved by datasets' save_to_disk; "
                        "repeat to combine sets")
    b.add_argument("--pivot-anchors", action="append", metavar="PATH",
                   help="anchors pairing another modality with text (e.g. sounds and their names for an image "
                        "collection): queries of that modality then reach the collection through text (repeatable)")
    b.add_argument("--out", required=True, help="output collection folder, e.g. indexes/NAME")
    b.add_argument("--image-encoder", default=DEFAULT_ENCODERS["image"])
    b.add_argument("--text-encoder", default=DEFAULT_ENCODERS["text"])
    b.add_argument("--audio-encoder", default=DEFAULT_ENCODERS["audio"])
    b.add_argument("--embedded-captions", action=argparse.BooleanOptionalAction, default=True,
                   help="an image without a caption (table column or .txt beside it) takes the one in its own "
                        "metadata: XMP description, IPTC caption, EXIF ImageDescription, else its keywords (camera "
                        "names are not captions; unreadable metadata is skipped and counted); default on")
    b.add_argument("--captions-from", choices=["names"], default=None,
                   help="names: a file still without a caption takes its name's words (red_apple.png: 'red apple'; "
                        "camera names such as IMG_1234 give none). Off by default: most photo folders name files by "
                        "counter or date")
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
    _anchors_parser(sub)

    ad = sub.add_parser("add", help="encode new files and append them to a collection (existing items are not re-encoded)")
    ad.add_argument("index", help="collection folder")
    ad.add_argument("--corpus", required=True, help="folder or .parquet/.csv of new files, of the collection's modality")
    ad.add_argument("--batch-size", type=int, default=32)
    ad.add_argument("--captions-from", choices=["names"], default=None,
                    help="names: a new file without a caption takes its name's words, as in build")
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
    ra.add_argument("--anchors", required=True, action="append", metavar="SOURCE",
                    help="the new parallel anchors (same modalities as the collection's), as for 'build --anchors' "
                         "(repeat to combine sets)")
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
