"""Dense routes: each structure the budget planner can choose, against exact search, in one run.

Vectors are derived from real encodings (MiniLM 384-d texts of the emoji names, perturbed), as in
bench_relativise.py; queries are other perturbations of the same real vectors. For each option of
`retrieval.indexes.budget.options` (Flat, HNSW32, IVF-Flat, IVF-PQ) it reports recall@10 against the exact
answer, batch queries/s and the ratio to exact (Flat) queries/s, build time, and what the planner
estimated, through the engine's own FaissIndex (candidate margin as for dense routes). An option
with a re-rank (IVF-PQ) is run twice: its codes alone, and with its candidates re-scored exactly
against the vectors memory-mapped from a .npy file, as a collection opens them.

    python scripts/bench_dense.py --out results/bench/dense.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import best_of, recall_at, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    from bench_relativise import real_vectors

    from retrieval.build.writer import DENSE_TIE_MARGIN
    from retrieval.indexes import FaissIndex
    from retrieval.indexes.budget import options, plan_dense

    rng = np.random.default_rng(0)
    x = real_vectors(a.dim, a.items, rng)
    q = real_vectors(a.dim, a.queries, rng)
    lines = [f"Dense routes: {a.items:,} vectors of width {a.dim} derived from real encodings, {a.queries} queries, "
             f"top-10 through FaissIndex (candidate margin {DENSE_TIE_MARGIN}); {os.cpu_count()} CPU cores.", "",
             f"Command: `python scripts/bench_dense.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(), "",
             "| index | params | build s | queries/s | x exact | recall@10 vs exact | est. MB | est. ms/query |",
             "|---|---|---|---|---|---|---|---|"]
    truth, exact_qps = None, None
    data = {"items": a.items, "dim": a.dim, "queries": a.queries, "rows": [], "planner": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-dense-"))
    np.save(tmp / "vectors.npy", x)
    mapped = np.load(tmp / "vectors.npy", mmap_mode="r")
    for o in options(a.items, a.dim):
        t = time.perf_counter()
        idx = FaissIndex(o.factory, params=o.params, tie_margin=DENSE_TIE_MARGIN).add(x)
        build_s = time.perf_counter() - t
        variants = [("", idx)]
        if o.rerank:
            idx.save(str(tmp), "pq")
            variants.append((f", re-rank x{o.rerank}", FaissIndex(o.factory, params=o.params, tie_margin=DENSE_TIE_MARGIN,
                                                                  rerank=o.rerank).load(str(tmp), "pq", mapped)))
        for label, index in variants:
            index.search(q[:10], 10)
            best, hits = best_of(lambda: index.search(q, 10))
            ids = np.vstack([h.ids for h in hits])
            if truth is None:
                truth, exact_qps = ids, a.queries / best
            recall = recall_at(ids, truth)
            qps = a.queries / best
            lines.append(f"| {o.factory}{label} | {o.params} | {build_s:.1f} | {qps:,.0f} | {qps / exact_qps:.1f} | "
                         f"{recall:.3f} | {o.est_bytes / 2**20:.0f} | {o.est_ms:.3f} |")
            print(lines[-1], flush=True)
            data["rows"].append({"index": o.factory + label, "params": o.params, "build_s": build_s,
                                 "queries_per_s": qps, "x_exact": qps / exact_qps, "recall_at_10": recall,
                                 "est_mb": o.est_bytes / 2**20, "est_ms": o.est_ms})
    shutil.rmtree(tmp, ignore_errors=True)
    for budget in ({"max_query_ms": 1.0}, {"max_memory": "100M"}):
        p = plan_dense(a.items, a.dim, **budget)
        lines.append(f"\nWith {budget}, the planner chooses {p.chosen.factory} ({p.chosen.params or 'no parameters'}).")
        data["planner"].append({"budget": budget, "factory": p.chosen.factory, "params": p.chosen.params})
    report(lines, a.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
