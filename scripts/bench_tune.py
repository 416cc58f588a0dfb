"""How long ``build --tune`` takes for 5,000 pairs with a bank and a label bridge, on this machine.

Synthetic pairs of the packaged encoders' widths (1,472-d pictures, 384-d texts, from a shared
64-d cause plus noise), a 1,758-pair bank (the emoji bank's size) drawn the same way, and label
vectors near each picture's text: ``retrieval.build.tuning.tune`` with its default budget, once.
Prints the settings tried within the budget and the seconds of the whole (grid, then the bank's
weight, the label bridge's and the routes). The load average is printed beside it: the figure is
only as quiet as the machine.

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
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    got = tune(media, text, [f"concept {i}" for i in range(PAIRS)], rec, bank=bank, labels=labels,
               show_progress_bar=False)
    seconds = time.perf_counter() - t0
    r = got.record
    lines = ["# build --tune: seconds for 5,000 pairs", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| pairs | bank | grid settings tried | grid budget s | whole tune s | load average (1 min) at start |",
             "|---:|---:|---:|---:|---:|---:|",
             f"| {PAIRS} | {BANK} | {r['tried']} of {r['candidates']} | {BUDGET_S:g} | {seconds:.1f} | {load:.1f} |", "",
             f"`.venv/bin/python scripts/bench_tune.py --out results/bench/tune.md` ({time.time() - start:.0f} s, "
             f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)"]
    report(lines, args.out, {"seconds": seconds, "record": r, "load": load})


if __name__ == "__main__":
    main()
