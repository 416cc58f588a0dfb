"""Distributed build: the same corpus built in one process and on a local Ray cluster, in one run.

Real data and the default encoders: the demo's Twemoji images (corpus, the first --items of them)
against its Noto anchors, EfficientNet-Lite0 + MiniLM. The anchors are encoded once beforehand
into a shared cache, so both builds time the corpus: checking files, encoding, relativising and
writing. The Ray build runs on a local cluster of --workers encoding actors (one CPU each) and
writes shards of --shard-size items; the one-process build uses torch's threads on every core.
Both results are checked to hold the same items with the same embeddings.

    python scripts/bench_ray.py --out results/bench/ray.md

Prints items/s for both and the ratio Ray / one process. On one small machine Ray cannot win: it
runs the same arithmetic on the same cores plus its scheduling and a model load per actor; what
it buys is that the same command spreads over as many machines as the cluster has.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="indexes/.emoji-data")
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=250)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from retrieval import Collection, build_collection
    from retrieval.build.anchors import encode_anchors, load_anchor_set
    from retrieval.datasets import emoji
    from retrieval.distributed import build_sharded, connect
    from retrieval.encoders import DEFAULT_ENCODERS, load_encoder

    paths = emoji.prepare(a.data, show_progress_bar=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    table = pq.read_table(paths["corpus"]).slice(0, a.items)
    corpus = str(tmp / "corpus.parquet")
    pq.write_table(pa.table({c: table.column(c) for c in ("image", "caption", "label")}), corpus)
    cache = str(tmp / "cache")
    anchors = load_anchor_set(paths["anchors"])
    for m in ("image", "text"):  # warm the anchor cache: both builds then time the corpus only
        encode_anchors(anchors, load_encoder(DEFAULT_ENCODERS[m], m), m, cache_dir=cache, show_progress_bar=False)
    n = table.num_rows

    t = time.perf_counter()
    one = build_collection(corpus, paths["anchors"], tmp / "one", cache_dir=cache, show_progress_bar=False)
    one_s = time.perf_counter() - t

    connect(None, num_cpus=a.workers, _node_ip_address="127.0.0.1", log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})  # one core per actor, as a cluster gives it
    t = time.perf_counter()
    many = build_sharded(corpus, paths["anchors"], tmp / "many", workers=a.workers, shard_size=a.shard_size,
                         cache_dir=cache, show_progress_bar=False)
    ray_s = time.perf_counter() - t
    ray.shutdown()

    a_col, b_col = Collection.open(one), Collection.open(many)
    same_ids = a_col.item_ids.tolist() == sorted(h for s in b_col._local for h in s.item_ids.tolist())
    b_vecs = np.vstack([np.asarray(s.sides["image"].abs) for s in b_col._local])
    max_diff = float(np.abs(np.asarray(a_col.sides["image"].abs) - b_vecs).max())

    lines = [f"Distributed build: {n} Twemoji images against {len(anchors)} Noto anchors, default encoders "
             f"(anchors cached beforehand); {os.cpu_count()} CPU cores, one machine.", "",
             f"Command: `python scripts/bench_ray.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(), "",
             "| build | seconds | items/s | ratio to one process |", "|---|---|---|---|",
             f"| one process (`build_collection`, torch threads on all cores) | {one_s:.1f} | {n / one_s:.1f} | 1.00 |",
             f"| local Ray cluster, {a.workers} encoding actors of 1 CPU, shards of {a.shard_size} "
             f"(`build_sharded`) | {ray_s:.1f} | {n / ray_s:.1f} | {one_s / ray_s:.2f} |", "",
             f"Same items in both: {same_ids}; largest difference between their embeddings: {max_diff:.2e}."]
    report(lines, a.out, {"items": n, "anchors": len(anchors), "workers": a.workers, "shard_size": a.shard_size,
                          "one_process_s": one_s, "ray_s": ray_s, "ratio": one_s / ray_s, "same_items": same_ids,
                          "max_embedding_difference": max_diff})
    return 0


if __name__ == "__main__":
    sys.exit(main())
