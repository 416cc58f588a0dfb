"""The inverted index's dense path against its touched-item path, on a built collection's own
queries, in one process: milliseconds a query and their ratio, and a check that both give the same
ids and scores (retrieval/indexes/inverted.py, "Dense queries").

    python scripts/bench_inverted_dense.py /work/scale/scale-1m --out results/bench/inverted-dense.md

Queries: the collection's first ``--queries`` distinct texts, encoded by its text encoder and made
relative by its projector, as a text search would; searched one at a time on one thread (the
kernel's cost; a server runs a batch's queries on every core), top 10, alternating the two paths
``--repeat`` times; the best repeat of each is reported.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from retrieval.evaluation.benchlib import inverted_args, inverted_side, report, text_queries
from retrieval.indexes import inverted


def timed(idx, q, at: float) -> tuple:
    inverted.DENSE_AT = at
    t0 = time.perf_counter()
    hits = idx.search(q, 10)
    return (time.perf_counter() - t0) / q.shape[0], hits


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inverted_args(ap, queries=32, repeat=3, k=False)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    opened, error = inverted_side(a.index, a.modality)
    if error:
        print(error, file=sys.stderr)
        return 2
    col, idx = opened
    idx.bounds = None  # this measures the dense path itself, not the bounded search (bench_inverted_bounded.py)
    q = text_queries(col, a.queries, spread=False)
    postings = np.array([np.sum(np.diff(idx.indptr)[q.indices[q.indptr[r]:q.indptr[r + 1]]]) for r in range(q.shape[0])])
    best = {"touched": np.inf, "dense": np.inf}
    for _ in range(a.repeat):
        t_touched, h_touched = timed(idx, q, np.inf)
        t_dense, h_dense = timed(idx, q, 0.0)
        best["touched"], best["dense"] = min(best["touched"], t_touched), min(best["dense"], t_dense)
    inverted.DENSE_AT = 1.0
    same = all(x.ids.tolist() == y.ids.tolist() and np.array_equal(x.scores, y.scores) for x, y in zip(h_touched, h_dense))
    cmd = "python scripts/bench_inverted_dense.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"Inverted index of `{a.index}` ({idx.n:,} items, {idx.weights.dtype} weights, {len(idx.indptr) - 1:,} "
             f"anchors), {q.shape[0]} text queries of {np.mean(np.diff(q.indptr)):.0f} anchors each, "
             f"{postings.mean() / 1e6:.1f}M postings a query on average, top 10, one thread, best of {a.repeat}.", "",
             f"Command: `{cmd}`", "",
             "| path | ms a query |", "|---|---|",
             f"| touched items recorded (the path before) | {1e3 * best['touched']:.1f} |",
             f"| dense (taken by default from {inverted.DENSE_AT:g} posting per item on) | {1e3 * best['dense']:.1f} |",
             "",
             f"Dense / touched: **{best['touched'] / best['dense']:.2f} x** faster; same ids and scores for every "
             f"query: {same}."]
    report(lines, a.out, {"ms": {k: 1e3 * v for k, v in best.items()}, "same": same, "postings": postings.tolist()})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
