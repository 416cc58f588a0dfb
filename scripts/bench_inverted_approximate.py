"""The inverted index's approximate search (retrieval/indexes/heads.py) against its exact search, on a
built collection's own queries, in one process: the setting chosen on validation queries, then
recall@k against the exact answers and milliseconds a query on test queries the choice never saw.

    python scripts/bench_inverted_approximate.py DIR --queries 400 --allow 0.1 --out results/bench/inverted-approximate.md

Queries: ``--queries`` of the collection's distinct texts, evenly spaced, encoded by its text encoder and
made relative by its projector, as a text search would; the even-numbered ones validate, the odd ones
test. Every setting of the grid is measured on the validation queries; the chosen one is the fastest
whose mean validation recall@k is at least ``--target`` (a tie in time goes to the higher recall).
Test: the exact search and the chosen and default settings alternate query by query on one thread
(the host's drift falls on all), ``--repeat`` times, each query's best time per path kept; with
``--allow`` a share, the same again with a filter allowing that share of the items.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import sys
import threading
import time
from typing import Dict, List

import numpy as np

from retrieval.evaluation.benchlib import inverted_args, inverted_side, report, text_queries
from retrieval.indexes.heads import Approximate

TERMS, HEADS, CANDIDATES = (8, 16, 32), (0.005, 0.01, 0.02, 0.05), (256, 512, 1024)


def answer(idx, row, k: int, setting, allowed=None):
    idx.approximate = setting
    t0 = time.perf_counter()
    hits = idx.search(row, k, allowed=allowed)[0]
    return time.perf_counter() - t0, hits.ids


def recall(got: np.ndarray, exact: np.ndarray, k: int) -> float:
    return len(set(got[:k].tolist()) & set(exact[:k].tolist())) / max(min(k, len(exact)), 1)


def validate(idx, q, k: int, exact: List[np.ndarray]) -> List[Dict]:
    """Every grid setting on the validation queries: mean recall, mean ms, the heads' size and making time."""
    rows = []
    for terms, head, cands in itertools.product(TERMS, HEADS, CANDIDATES):
        setting = Approximate(terms, head, cands)
        idx.approximate = setting
        t0 = time.perf_counter()
        made = idx._made_heads()
        make_s = time.perf_counter() - t0
        answer(idx, q[0], k, setting)  # kernels compiled or read from numba's cache before the clock runs
        got = [answer(idx, q[r], k, setting) for r in range(q.shape[0])]
        rows.append({"setting": setting.to_spec(), "recall": float(np.mean([recall(g, e, k) for (_, g), e in zip(got, exact)])),
                     "ms": 1e3 * float(np.mean([t for t, _ in got])), "heads_mb": made.nbytes() / 2 ** 20,
                     "make_s": make_s})
    return rows


def own_heads(idx, setting):
    """(an index over the same arrays with its own heads, made now, and workspaces, the setting): so that
    two settings alternate without remaking heads, and no query's time includes making them."""
    twin = copy.copy(idx)
    twin._heads, twin._heads_lock, twin._spares = None, threading.Lock(), []
    twin.approximate = setting
    if setting is not None:
        twin._made_heads()
    return twin, setting


def test(q, k: int, paths: Dict, repeat: int, allowed=None) -> Dict:
    """Each path's per-query best ms and ids on the test queries (among the ``allowed`` items, if
    given), the paths alternating."""
    ms = {name: np.full(q.shape[0], np.inf) for name in paths}
    ids = {name: [None] * q.shape[0] for name in paths}
    for _ in range(repeat):
        for r in range(q.shape[0]):
            for name, (idx, setting) in paths.items():
                t, got = answer(idx, q[r], k, setting, allowed)
                ms[name][r], ids[name][r] = min(ms[name][r], 1e3 * t), got
    return {"ms": ms, "ids": ids}


def test_table(measured: Dict, k: int) -> List[str]:
    """Each path's recall against the exact path's answers and its times, and the ratios."""
    out = [f"| path | recall@{k} mean | queries with recall 1 | min | mean ms | p50 | p90 | p99 | max |",
           "|---|---|---|---|---|---|---|---|---|"]
    exact = measured["ids"]["exact"]
    for name, t in measured["ms"].items():
        rec = np.array([recall(g, e, k) for g, e in zip(measured["ids"][name], exact)])
        out.append(f"| {name} | {rec.mean():.4f} | {np.mean(rec == 1.0):.2f} | {rec.min():.2f} | {t.mean():.2f} | "
                   f"{np.percentile(t, 50):.2f} | {np.percentile(t, 90):.2f} | {np.percentile(t, 99):.2f} | {t.max():.2f} |")
    base = measured["ms"]["exact"].mean()
    return out + ["", "Exact / approximate, mean time a query: " + "; ".join(
        f"{name} **{base / t.mean():.2f} x**" for name, t in measured["ms"].items() if name != "exact") + "."]


def lines_of(a, idx, qv, qt, rows, chosen, measured, filtered, argv) -> List[str]:
    cmd = "python scripts/bench_inverted_approximate.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = [f"Inverted index of `{a.index}` ({idx.n:,} items, {idx.weights.dtype} weights, {len(idx.indptr) - 1:,} "
           f"anchors), text queries of {np.mean(np.diff(qt.indptr)):.0f} anchors each, top {a.k}, one thread: "
           f"{qv.shape[0]} validation queries choose the setting (the fastest with mean recall@{a.k} >= {a.target}), "
           f"{qt.shape[0]} other test queries measure it.", "", f"Command: `{cmd}`", "",
           "## Validation queries: every setting", "",
           f"| terms | head share | candidates | recall@{a.k} | mean ms | heads MB | heads made in s |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["setting"]
        mark = "**" if s == chosen.to_spec() else ""
        out.append(f"| {mark}{s['terms']}{mark} | {s['head']:g} | {s['candidates']} | {r['recall']:.4f} | {r['ms']:.2f} | "
                   f"{r['heads_mb']:.0f} | {r['make_s']:.1f} |")
    out += ["", f"Chosen: {chosen.to_spec()}; the module's default (retrieval.indexes.heads.Approximate()): "
            f"{Approximate().to_spec()}.", "", "## Test queries", ""] + test_table(measured, a.k)
    if filtered is not None:
        out += ["", f"## Test queries, filtered: {a.allow:g} of the items allowed (at random, seed 0)", "",
                *test_table(filtered, a.k)]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inverted_args(ap, queries=400)
    ap.add_argument("--target", type=float, default=0.99, help="validation recall the chosen setting must reach")
    ap.add_argument("--allow", type=float, default=0.0,
                    help="also test a filtered search: this share of the items, drawn at random (seed 0), allowed")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.queries < 2 or a.repeat < 1 or a.k < 1 or not 0.0 < a.target <= 1.0 or not 0.0 <= a.allow <= 1.0:
        ap.error(f"expected --queries >= 2, --repeat and -k >= 1, --target in (0, 1] and --allow in [0, 1], got "
                 f"{a.queries}, {a.repeat}, {a.k}, {a.target} and {a.allow}")
    opened, error = inverted_side(a.index, a.modality, need_bounds=True)
    if error:
        print(error, file=sys.stderr)
        return 2
    col, idx = opened
    q = text_queries(col, a.queries)
    if q.shape[0] < 2:
        print(f"error: expected at least 2 distinct texts in {a.index} (one to validate, one to test), got "
              f"{q.shape[0]}", file=sys.stderr)
        return 2
    qv, qt = q[0::2], q[1::2]
    exact_v = [answer(idx, qv[r], a.k, None)[1] for r in range(qv.shape[0])]
    rows = validate(idx, qv, a.k, exact_v)
    good = [r for r in rows if r["recall"] >= a.target] or [max(rows, key=lambda r: r["recall"])]
    chosen = Approximate(**min(good, key=lambda r: (r["ms"], -r["recall"]))["setting"])
    paths = {"exact": None, "approximate, chosen": chosen}
    if chosen != Approximate():
        paths["approximate, default"] = Approximate()
    twins = {name: own_heads(idx, setting) for name, setting in paths.items()}
    measured = test(qt, a.k, twins, a.repeat)
    filtered = None
    if a.allow:
        filtered = test(qt, a.k, twins, a.repeat, np.flatnonzero(np.random.default_rng(0).random(idx.n) < a.allow))
    lines = lines_of(a, idx, qv, qt, rows, chosen, measured, filtered, argv)
    report(lines, a.out, {"validation": rows, "chosen": chosen.to_spec(), "default": Approximate().to_spec(),
                          "test_ms": {n: t.tolist() for n, t in measured["ms"].items()}, "k": a.k,
                          **({"filtered_ms": {n: t.tolist() for n, t in filtered["ms"].items()}, "allow": a.allow}
                             if filtered else {})})
    return 0


if __name__ == "__main__":
    sys.exit(main())
