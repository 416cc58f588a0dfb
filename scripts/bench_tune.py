"""How long ``build --tune`` takes for 5,000 pairs with a bank and a label bridge, on this machine.

Synthetic pairs of the packaged encoders' widths (1,472-d pictures, 384-d texts, from a shared
64-d cause plus noise), a 1,758-pair bank (the emoji bank's size) drawn the same way, and label
vectors near each picture's text: ``retrieval.build.tuning.tune`` with its default budget, then, in
the same process, the same pairs without the bank and the labels (the anchors alone, as --tune was
before it weighed them) as the baseline. Prints the settings tried within the budget, the seconds
of each (the issue asks for at most 2 minutes) and their ratio. The load average is printed beside
it: the figures are only as quiet as the machine.

    .venv/bin/python scripts/bench_tune.py --out results/bench/tune.md
"""

from __future__ import annotations

import os
import time

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.tuning import BUDGET_S, tune
from retrieval.evaluation.benchlib import out_args, report

PAIRS, BANK, CAUSE = 5000, 1758, 64


def drawn(n: int, seed: int, maps):
    """(pictures, texts) of n concepts: the shared cause through each side's map, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, CAUSE))
    media = z @ maps[0] + 2.0 * rng.normal(size=(n, maps[0].shape[1]))
    text = z @ maps[1] + 2.0 * rng.normal(size=(n, maps[1].shape[1]))
    return media.astype(np.float32), text.astype(np.float32)


def main() -> None:
    args, start = out_args(__doc__)
    rng = np.random.default_rng(0)
    maps = (rng.normal(size=(CAUSE, 1472)), rng.normal(size=(CAUSE, 384)))
    media, text = drawn(PAIRS, 1, maps)
    bank = drawn(BANK, 2, maps)
    labels = text + 3.0 * np.random.default_rng(3).normal(size=text.shape)
    labels = (labels / np.linalg.norm(labels, axis=1, keepdims=True)).astype(np.float32)
    rec = recipe(AnchorShape(PAIRS), "efficientnet-lite0-multi", BuildOptions())
    concepts = [f"concept {i}" for i in range(PAIRS)]
    load, rows, seconds = os.getloadavg()[0], [], {}
    for name, kw in (("bank and label bridge", {"bank": bank, "labels": labels}), ("anchors alone (baseline)", {})):
        t0 = time.perf_counter()
        r = tune(media, text, concepts, rec, show_progress_bar=False, **kw).record
        seconds[name] = time.perf_counter() - t0
        rows.append(f"| {name} | {r['tried']} of {r['candidates']} | {seconds[name]:.1f} |")
    ratio = seconds["bank and label bridge"] / seconds["anchors alone (baseline)"]
    lines = ["# build --tune: seconds for 5,000 pairs", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Budget {BUDGET_S:g} s; load average (1 min) at the start {load:.1f}.", "",
             "| tune | grid settings tried | whole tune s |", "|---|---:|---:|", *rows, "",
             f"With the bank and the label bridge / anchors alone: {ratio:.2f} x the time.", "",
             f"`.venv/bin/python scripts/bench_tune.py --out results/bench/tune.md` ({time.time() - start:.0f} s, "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)"]
    report(lines, args.out, {"seconds": seconds, "ratio": ratio, "load": load})


if __name__ == "__main__":
    main()
