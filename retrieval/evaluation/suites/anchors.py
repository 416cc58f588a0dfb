"""anchors: how many parallel pairs a user needs, and how to choose them (the anchor budget curve).

For every single-view source of the ``pictures`` suite (Tux Paint, Open Clip Art, Scratch, emoji
with Noto anchors), the anchor half of the concepts is the *pool*; N pairs of it are kept by each
selector that ``retrieval build --n-anchors N --select METHOD`` offers, and the engine's default
text -> image search (ASIF k = min(256, N), p = 2, centred, plus the label bridge) is measured on
the unseen query half. Nothing is chosen here: the curve is what a user reads to pick N.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.selection import SELECTORS, select
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
                t = PictureTask(test.at[keep], test.ai[keep], test.q, test.g, test.g_logits, test.classes)
                ms.append(t.metrics("asif", cfg))
            out[method][n] = {k: float(np.mean([m[k] for m in ms])) for k in ("R@1", "R@10", "MRR")}
    return out


def run(report: Report, ctx) -> Dict:
    cfg = engine_default()
    report.text(f"""
The pool: the anchor half of each source's concepts (one picture and its caption each); queries: the
other half's captions, gallery: their pictures (unseen concepts). Selectors look only at the pool's
images (`coverage` also at the gallery's, as a build looks at its corpus), never at captions. The
search is the engine's default for single-view anchors (ASIF k = min({cfg['asif']['k']}, N),
p = {cfg['asif']['p']:g}, centred, plus {cfg['w']:g} x the label bridge); random is the mean of
{len(SEEDS)} draws. Test R@10, text -> image.""")
    summary, missing = {}, []
    for name in SOURCES:
        try:
            test, _, pool = source_tasks(name, ctx.image, ctx.text, ctx.show_progress_bar)
        except Exception as exc:  # noqa: BLE001 - a source whose data is not installed is named, not fatal
            missing.append(f"{name} ({str(exc).splitlines()[0][:200]})")
            continue
        res = curve(test, cfg)
        sizes = list(next(iter(res.values())))
        summary[name] = {m: {str(n): v for n, v in r.items()} for m, r in res.items()}
        report.table(f"{name}: test R@10 against the number of anchors kept (pool {pool}, {len(test.q)} queries)",
                     ["anchors"] + list(SELECTORS), [[n] + [res[m][n]["R@10"] for m in SELECTORS] for n in sizes])
        report.plot(f"{name}.png", f"{name}: R@10 vs anchors kept (unseen, text->image)", "anchors", "R@10",
                    {m: (sizes, [res[m][n]["R@10"] for n in sizes]) for m in SELECTORS}, logx=True,
                    hline=min(1.0, 10 / len(test.q)))
    if missing:
        report.text("Sources not measured (their data is not installed here): " + "; ".join(missing) + ".")
    report.data("summary.json", summary)
    return summary


SUITE = Suite("anchors", "how text->image quality grows with the number of anchor pairs kept, for each selector "
              "of retrieval build --n-anchors (random, fps, kmeans, coverage), on the single-view picture sources",
              run)
