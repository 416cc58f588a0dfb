"""The inverted index's bounded search (retrieval/indexes/bounded.py) against reading every posting,
on a built collection's own queries, in one process: milliseconds a query (median, p90, p99, max),
their ratio, how many queries the bounds answered, and a check that both give the same ids and scores.

    python scripts/bench_inverted_bounded.py /work/scale/scale-1m --out results/bench/inverted-bounded.md

Queries: ``--queries`` of the collection's distinct texts, evenly spaced, encoded by its text encoder
and made relative by its projector, as a text search would; searched one at a time on one thread,
top ``-k``, the two paths alternating query by query (the host's drift falls on both), ``--repeat``
times; each query's best time per path is kept. The collection must have been built with the bounds
(any build since they exist); ``retrieval info`` names them in the index spec.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List

import numpy as np
import scipy.sparse as sp

from retrieval.evaluation.benchlib import inverted_args, inverted_side, report, text_queries
from retrieval.indexes import bounded, inverted


def once(idx, row, k: int, bounds, allowed=None) -> tuple:
    idx.bounds = bounds
    t0 = time.perf_counter()
    hits = idx.search(row, k, allowed=allowed)[0]
    return time.perf_counter() - t0, hits


def subset(bounds, n: int, dim: int):
    """An index of the collection's first ``n`` items, rebuilt from its rows (the size a smaller
    collection would have)."""
    end = int(bounds.ptr[n])
    rows = sp.csr_matrix((np.asarray(bounds.weights[:end], np.float32), np.asarray(bounds.anchors[:end], np.int32),
                          np.asarray(bounds.ptr[:n + 1])), shape=(n, dim))
    return inverted.InvertedIndex(str(bounds.weights.dtype), threads=1).add(rows)


def paths(idx, q, k: int, repeat: int, allowed=None) -> tuple:
    """({path: ms a query, per query}, whether both paths gave the same ids and scores for all)."""
    bounds = idx.bounds
    best = {"every posting": np.full(q.shape[0], np.inf), "bounded": np.full(q.shape[0], np.inf)}
    same = True
    for _ in range(repeat):
        for r in range(q.shape[0]):
            t_full, h_full = once(idx, q[r], k, None, allowed)
            t_bound, h_bound = once(idx, q[r], k, bounds, allowed)
            best["every posting"][r] = min(best["every posting"][r], t_full)
            best["bounded"][r] = min(best["bounded"][r], t_bound)
            same &= h_full.ids.tolist() == h_bound.ids.tolist() and np.array_equal(h_full.scores, h_bound.scores)
    idx.bounds = bounds
    return {name: 1e3 * t for name, t in best.items()}, same


def subsets(bounds, sizes: List[int], q, k: int, repeat: int) -> tuple:
    """({items: mean ms of each path}, all the same): indexes of the collection's first N items,
    taking the bounded path whatever their size, to show where it pays."""
    out, same, floor = {}, True, bounded.MIN_ITEMS
    bounded.MIN_ITEMS = 0
    try:
        for n in sizes:
            small = subset(bounds, min(n, len(bounds.norms)), len(bounds.ranges))
            small.search(q[:1], k)  # workspaces made before the clock runs
            times, agree = paths(small, q, k, repeat)
            out[small.n] = {"ms": {name: float(t.mean()) for name, t in times.items()}, "same": bool(agree)}
            same &= agree
    finally:
        bounded.MIN_ITEMS = floor
    return out, same


def table(a, idx, q, ms, found, same, sizes, argv) -> List[str]:
    cmd = "python scripts/bench_inverted_bounded.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"Inverted index of `{a.index}` ({idx.n:,} items, {idx.weights.dtype} weights, {len(idx.indptr) - 1:,} "
             f"anchors), {q.shape[0]} text queries of {np.mean(np.diff(q.indptr)):.0f} anchors each, top {a.k}, one "
             f"thread, each query's best of {a.repeat}, the two paths alternating.", "",
             f"Command: `{cmd}`", "",
             "| path | mean ms | p50 | p90 | p99 | max |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {t.mean():.1f} | {np.percentile(t, 50):.1f} | {np.percentile(t, 90):.1f} | "
              f"{np.percentile(t, 99):.1f} | {t.max():.1f} |" for name, t in ms.items()]
    lines += ["", f"Every posting / bounded, mean time a query: **{ms['every posting'].mean() / ms['bounded'].mean():.2f} x**; "
              f"the bounds answered {found[0]} of {found[1]} queries (the rest read every posting); "
              f"same ids and scores for every query, here and below: {same}."]
    if sizes:
        lines += ["", f"The same queries on indexes of the first N items (built from the rows; the index takes the "
                  f"bounded path from {bounded.MIN_ITEMS:,} items on, forced here):", "",
                  "| items | every posting, mean ms | bounded, mean ms | ratio |", "|---|---|---|---|"]
        lines += [f"| {n:,} | {v['ms']['every posting']:.2f} | {v['ms']['bounded']:.2f} | "
                  f"{v['ms']['every posting'] / v['ms']['bounded']:.2f} x |" for n, v in sizes.items()]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inverted_args(ap, queries=200)
    ap.add_argument("--subsets", default="5000,30000,100000",
                    help="also time both paths on indexes of the first N items (comma-separated; '' for none)")
    ap.add_argument("--allow", type=float, default=0.0,
                    help="also time a filtered search: this share of the items, drawn at random (seed 0), allowed")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    sizes = [x.strip() for x in a.subsets.split(",") if x.strip()]
    if a.queries < 1 or a.repeat < 1 or a.k < 1 or not 0.0 <= a.allow <= 1.0 or not all(x.isdigit() and int(x) > 0
                                                                                          for x in sizes):
        ap.error(f"expected --queries, --repeat and -k of at least 1, --allow within 0..1 and --subsets as positive "
                 f"item counts separated by commas, got {a.queries}, {a.repeat}, {a.k}, {a.allow} and {a.subsets!r}")
    opened, error = inverted_side(a.index, a.modality, need_bounds=True)
    if error:
        print(error, file=sys.stderr)
        return 2
    col, idx = opened
    q = text_queries(col, a.queries)
    answered, search = [], bounded.search

    def counted(*args):
        found = search(*args)
        answered.append(found is not None)
        return found

    bounded.search = counted
    try:
        ms, same = paths(idx, q, a.k, a.repeat)
        found = (sum(answered) // a.repeat, len(answered) // a.repeat)
        sizes, agree = subsets(idx.bounds, [int(x) for x in sizes], q, a.k, a.repeat)
        if a.allow:
            allowed = np.flatnonzero(np.random.default_rng(0).random(idx.n) < a.allow)
            filtered, agree_f = paths(idx, q, a.k, a.repeat, allowed)
            agree &= agree_f
    finally:
        bounded.search = search
    same &= agree
    lines = table(a, idx, q, ms, found, same, sizes, argv)
    if a.allow:
        lines += ["", f"Filtered: {len(allowed):,} items allowed ({a.allow:g} of them, at random), the same queries: "
                  f"every posting {filtered['every posting'].mean():.1f} ms a query, bounded "
                  f"{filtered['bounded'].mean():.1f} ms (**{filtered['every posting'].mean() / filtered['bounded'].mean():.2f} x**)."]
    report(lines, a.out, {"ms": {k: v.tolist() for k, v in ms.items()}, "answered": found[0], "queries": found[1],
                          "same": bool(same), "k": a.k, "subsets": sizes,
                          **({"filtered_ms": {k: v.tolist() for k, v in filtered.items()}, "allow": a.allow}
                             if a.allow else {})})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
