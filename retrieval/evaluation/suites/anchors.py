"""anchors: how many parallel pairs a user needs, and how to choose them (the anchor budget curve).

For every single-view source of the ``pictures`` suite (Tux Paint, Open Clip Art, Scratch, emoji
with Noto anchors), the anchor half of the concepts is the *pool*; N pairs of it are kept by each
selector that ``retrieval build --n-anchors N --select METHOD`` offers, and the engine's default
text -> image search (ASIF k = min(256, N), p = 2, whitened, plus the background bank and the label
bridge) is measured on the unseen query half. Nothing is chosen here: the curve is what a user reads to pick N.

Bootstrapping (the thesis' growing of an anchor set): from a random seed of N0 pairs, the rest of the
pool is given as two unpaired lists (pictures, captions); pairs that are each other's best match over
the seed anchors are proposed, most confident (largest margin over the runner-up) first, and the
first M accepted. Measured against the curve: the seed alone, and as many true random pairs.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.projector import RelativeProjector
from retrieval.core.selection import SELECTORS, bootstrap_pairs, random_select, select
from retrieval.evaluation.harness import Suite
from retrieval.evaluation.report import Report
from retrieval.evaluation.suites.pictures import SOURCES, PictureTask, engine_default, source_tasks

BUDGETS = (25, 50, 100, 200, 400, 800)
SEEDS = (0, 1, 2)  # random selection: the mean of three draws


def curve(test: PictureTask, cfg: Dict) -> Dict[str, Dict[int, Dict[str, float]]]:
    """{selector: {N: test metrics}} for every budget below the pool's size, and the whole pool."""
    pool = len(test.at)
    sizes = [n for n in BUDGETS if n < pool] + [pool]
    out = {}
    for method in SELECTORS:
        out[method] = {}
        for n in sizes:
            seeds = SEEDS if method == "random" and n < pool else (0,)
            ms = []
            for seed in seeds:
                keep = select(method, test.ai, n, seed=seed, corpus=test.g)
                t = PictureTask(test.at[keep], test.ai[keep], test.q, test.g, test.g_logits, test.classes, test.background)
                ms.append(t.metrics("asif", cfg))
            out[method][n] = {k: float(np.mean([m[k] for m in ms])) for k in ("R@1", "R@10", "MRR")}
    return out


def bootstrap(test: PictureTask, cfg: Dict, seed_sizes=(25, 50, 100)) -> list:
    """Rows (seed N, proposals accepted, their precision, R@10 of seed only, seed + proposals, and N
    true random pairs of the same total): the rest of the pool is given *unpaired* (its pictures and
    its captions as two lists); mutual nearest neighbours over the seed anchors are proposed, most
    confident first."""
    pool = len(test.at)
    rows = []
    for n0 in [n for n in seed_sizes if 2 * n < pool]:
        seed = random_select(pool, n0, 0)
        rest = np.setdiff1d(np.arange(pool), seed)
        a = cfg["asif"]
        k = min(a["k"], n0)
        pi = RelativeProjector(k=k, p=a["p"], center=a["center"]).fit(test.ai[seed])
        pt = RelativeProjector(k=k, p=a["p"], center=a["center"]).fit(test.at[seed])
        proposals = bootstrap_pairs(pi.transform(test.ai[rest]), pt.transform(test.at[rest]), accept=len(rest))
        seed_only = PictureTask(test.at[seed], test.ai[seed], test.q, test.g, test.g_logits, test.classes, test.background)
        base = seed_only.metrics("asif", cfg)["R@10"]
        for m in (n0 // 2, n0, 2 * n0):
            acc = proposals[:m].astype(int)
            if len(acc) < m:
                break
            mi, ti = rest[acc[:, 0]], rest[acc[:, 1]]
            grown = PictureTask(np.vstack([test.at[seed], test.at[ti]]), np.vstack([test.ai[seed], test.ai[mi]]),
                                test.q, test.g, test.g_logits, test.classes, test.background)
            true_n = select("random", test.ai, n0 + m, seed=0)
            truth = PictureTask(test.at[true_n], test.ai[true_n], test.q, test.g, test.g_logits, test.classes, test.background)
            rows.append([n0, m, float(np.mean(mi == ti)), base, grown.metrics("asif", cfg)["R@10"],
                         truth.metrics("asif", cfg)["R@10"]])
    return rows


def run(report: Report, ctx) -> Dict:
    cfg = engine_default()
    report.text(f"""
The pool: the anchor half of each source's concepts (one picture and its caption each); queries: the
other half's captions, gallery: their pictures (unseen concepts). Selectors look only at the pool's
images (`coverage` also at the gallery's, as a build looks at its corpus), never at captions. The
search is the engine's default for single-view anchors (ASIF k = min({cfg['asif']['k']}, N),
p = {cfg['asif']['p']:g}, whitened on the kept anchors with lambda {cfg['asif'].get('whiten', 0):g}, plus
{cfg['asif'].get('background', 0):g} x the score against the background bank (the pictures suite's, named per source),
plus {cfg['w']:g} x the label bridge); random is the mean of
{len(SEEDS)} draws. Test R@10, text -> image.""")
    summary, missing = {}, []
    for name in SOURCES:
        try:
            test, _, pool, bank = source_tasks(name, ctx.image, ctx.text, ctx.show_progress_bar)
        except Exception as exc:  # noqa: BLE001 - a source whose data is not installed is named, not fatal
            missing.append(f"{name} ({str(exc).splitlines()[0][:200]})")
            continue
        res = curve(test, cfg)
        sizes = list(next(iter(res.values())))
        summary[name] = {m: {str(n): v for n, v in r.items()} for m, r in res.items()}
        report.table(f"{name}: test R@10 against the number of anchors kept (pool {pool}, {len(test.q)} queries; "
                     f"background bank: {bank})",
                     ["anchors"] + list(SELECTORS), [[n] + [res[m][n]["R@10"] for m in SELECTORS] for n in sizes])
        report.plot(f"{name}.png", f"{name}: R@10 vs anchors kept (unseen, text->image)", "anchors", "R@10",
                    {m: (sizes, [res[m][n]["R@10"] for n in sizes]) for m in SELECTORS}, logx=True,
                    hline=min(1.0, 10 / len(test.q)))
        boot = bootstrap(test, cfg)
        summary[name]["bootstrap"] = boot
        if boot:
            report.table(f"{name}: bootstrapping from a random seed set (the rest of the pool given unpaired)",
                         ["seed pairs", "proposed pairs accepted", "their precision", "R@10 seed only",
                          "R@10 seed + proposals", "R@10 as many true random pairs"], boot)
    if missing:
        report.text("Sources not measured (their data is not installed here): " + "; ".join(missing) + ".")
    report.data("summary.json", summary)
    return summary


SUITE = Suite("anchors", "how text->image quality grows with the number of anchor pairs kept, for each selector "
              "of retrieval build --n-anchors (random, fps, kmeans, coverage), on the single-view picture sources",
              run)
