"""Zero-shot stitching, measured: queries encoded by another image network than the collection's.

Data: the demo's emoji (indexes/.emoji-data, made by `retrieval demo`): a gallery of the Twemoji
drawings, Noto anchors (one drawing a concept, captioned), and as queries the OpenMoji drawings of
the gallery's concepts (a style neither the gallery nor the anchors use). The target of a query is
the gallery drawing of its concept; image -> image, and image -> text (the gallery's captions).

Two packaged networks: EfficientNet-Lite0 and EfficientNet-Lite2 (both 1280-d). For each direction
(corpus built with one, queries encoded by the other) the rows are:
* the collection re-encoded with the query's own network (what stitching saves: a rebuild), its
  absolute route (image -> image) or the planner's route (image -> text);
* the naive use of the wrong space: the other network's vectors compared as if they were the
  collection's (the widths agree, so nothing stops it);
* the two stitched routes (retrieval/api/stitch.py): ``relative`` (the query relativised against the
  anchors as its own network sees them) and ``stitch`` (mapped into the collection's space by an
  orthogonal map fitted on the anchors, then the collection's best route);
* the collection's own network (the ceiling).

    python scripts/stitching_experiment.py --out results/stitching/README.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import emoji_data_args, report

NETS = ("efficientnet-lite0", "efficientnet-lite2")


def metrics(ranked, targets):
    """R@1, R@10 and MRR of ranked id lists against one target id each."""
    ranks = [r.index(t) + 1 if t in r else None for r, t in zip(ranked, targets)]
    return {"R@1": float(np.mean([x == 1 for x in ranks])), "R@10": float(np.mean([x is not None and x <= 10
                                                                                 for x in ranks])),
            "MRR": float(np.mean([1 / x if x else 0.0 for x in ranks]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    emoji_data_args(ap)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.datasets import emoji
    from retrieval.encoders import load_encoder

    paths = emoji.prepare(a.data, limit=a.limit, show_progress_bar=False)
    corpus = pq.read_table(paths["corpus"]).to_pylist()
    qdir = Path(a.data) / "openmoji"
    tmp = Path(tempfile.mkdtemp(prefix="stitching-"))
    # no self-anchoring: the corpus's captions are this experiment's queries
    cols = {net: Collection.open(build_collection(paths["corpus"], paths["anchors"], tmp / net, image_encoder=net,
                                                  labels=False, show_progress_bar=False, self_anchors=False))
            for net in NETS}
    first = cols[NETS[0]]
    by_path = {p: int(i) for p, i in zip(first.items["path"], first.item_ids)}
    queries, item_targets, text_targets = [], [], []
    caption_ids = {c: int(i) for c, i, s in zip(first.texts["text"], first.text_ids, first.texts["source"])
                   if s == "corpus"}
    for row in corpus:
        q = qdir / Path(row["image"]).name
        if q.is_file() and os.path.abspath(row["image"]) in by_path:
            queries.append(str(q))
            item_targets.append(by_path[os.path.abspath(row["image"])])
            text_targets.append(caption_ids[row["caption"]])
    if not queries:
        print(f"no OpenMoji drawings found in {qdir}: run 'retrieval demo' (it renders them) first", file=sys.stderr)
        return 2
    vecs = {net: load_encoder(net, "image").encode(queries, batch_size=64, show_progress_bar=False) for net in NETS}

    def run(col, q, target, route=None, modality="image"):
        hits = col.search_vectors(q, k=10, modality=modality, target=target, route=route)
        return [[h.id for h in hs] for hs in hits]

    rows, data = [], {"queries": len(queries), "gallery": len(first.item_ids), "rows": []}
    for built, other in (NETS, NETS[::-1]):
        stitched = Collection.open(tmp / built, image_encoder=other)
        for target, targets in (("image", item_targets), ("text", text_targets)):
            own_route = "absolute" if target == "image" else None
            cases = [
                (f"collection re-encoded with {other} (the query's own network)",
                 run(cols[other], vecs[other], target, own_route)),
                (f"naive: {other} vectors searched as if they were {built}'s",
                 run(cols[built], vecs[other], target, own_route)),
                ("stitched, route relative (anchors encoded by both)", run(stitched, vecs[other], target, "relative")),
                (f"stitched, route stitch (orthogonal map into {built}, then its route)",
                 run(stitched, vecs[other], target, "stitch")),
                (f"the planner's choice for the stitched query ({stitched.plan('image', target).route})",
                 run(stitched, vecs[other], target)),
                (f"ceiling: {built} queries on the {built} collection", run(cols[built], vecs[built], target, own_route)),
            ]
            for name, ranked in cases:
                m = metrics(ranked, targets)
                rows.append(f"| {built} | {other} | image -> {target} | {name} | {m['R@1']:.3f} | {m['R@10']:.3f} | "
                            f"{m['MRR']:.3f} |")
                data["rows"].append({"corpus_encoder": built, "query_encoder": other, "direction": f"image->{target}",
                                     "method": name, **m})
    # Text -> image while a collection is stitched: text queries are encoded by the text encoder,
    # which the image stitch does not touch, so they search the corpus network's vectors; measured
    # against the collection re-encoded with the other network (the captions of the same items).
    captions = [row["caption"] for row in corpus if os.path.abspath(row["image"]) in by_path]
    caption_targets = [by_path[os.path.abspath(row["image"])] for row in corpus if os.path.abspath(row["image"]) in by_path]
    for built, other in (NETS, NETS[::-1]):
        stitched = Collection.open(tmp / built, image_encoder=other)
        for name, col in ((f"collection re-encoded with {other}", cols[other]),
                          (f"stitched to {other} (the {built} vectors answer)", stitched)):
            ranked = [[h.id for h in hs] for hs in col.search_many(captions, k=10, modality="text", target="image")]
            m = metrics(ranked, caption_targets)
            rows.append(f"| {built} | {other} | text -> image | {name} | {m['R@1']:.3f} | {m['R@10']:.3f} | "
                        f"{m['MRR']:.3f} |")
            data["rows"].append({"corpus_encoder": built, "query_encoder": other, "direction": "text->image",
                                 "method": name, **m})
    lines = [f"Stitching: {len(queries)} OpenMoji queries against {data['gallery']} Twemoji items (and their "
             f"captions), anchors: Noto drawings with captions; {os.cpu_count()} CPU cores.", "",
             f"Command: `python scripts/stitching_experiment.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(),
             "", "| corpus encoder | query encoder | direction | method | R@1 | R@10 | MRR |", "|---|---|---|---|---|---|---|",
             *rows]
    report(lines, a.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
