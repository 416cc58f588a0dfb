"""Which items to ask captions for: the selectors of retrieval/core/selection.py against random choice.

For ``retrieval suggest`` (issue 36, not built yet): the same number of corpus items captioned, chosen
at random (3 draws) or by a selector over the items' embeddings (fps and kmeans with 2 seeds;
coverage, deterministic), with the emoji pairs as anchors and self-anchoring as a build does it
(retrieval/evaluation/suites/captions.py: ``one_draw``). Test R@10 of the items left uncaptioned (so
each rule is scored on the items it did not choose).

    .venv/bin/python scripts/suggest_probe.py --out results/experiments/suggest.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.build.background import TEMPLATE
from retrieval.core.selection import select
from retrieval.encoders import load_encoder
from retrieval.encoders.labels import class_vectors, imagenet_names
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_emoji, load_pictures
from retrieval.evaluation.suites import captions as C
from retrieval.evaluation.suites.pictures import image_logits, label_bridge

SOURCES = ("tuxpaint", "scratch")
FRACTIONS = (0.10, 0.30)
RULES = {"random": 3, "fps": 2, "kmeans": 2, "coverage": 1}  # seeds each (coverage has none)


def chosen(rule: str, images: np.ndarray, n: int, seed: int) -> np.ndarray:
    if rule == "random":
        return np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return np.sort(select(rule, images, n, corpus=images, seed=seed))


def main() -> None:
    args, start = out_args(__doc__)
    img, txt = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    classes = class_vectors(txt, imagenet_names())
    em = load_emoji(img, txt, [TEMPLATE], False)
    given = C.Anchors("emoji", em.texts[TEMPLATE], em.images["noto"])
    data = {}
    for name in SOURCES:
        d = load_pictures(name, img, txt, False)
        logits = image_logits(d.paths, name)

        def labels(rows, d=d, logits=logits):
            return label_bridge(logits, classes, d.texts[rows])

        for f in FRACTIONS:
            n = int(round(f * len(d.images)))
            data[f"{name} {f:.0%} ({n})"] = {
                rule: [float(C.one_draw(given, (d.texts, d.images, d.captions), chosen(rule, d.images, n, s),
                                        labels)[C.ROWS[3]].mean()) for s in range(seeds)]
                for rule, seeds in RULES.items()}
    cols = list(data)
    lines = ["# Which items to caption: selectors against random choice", "", __doc__.split("\n\n")[1].replace("\n", " "),
             "", "| rule | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {rule} | " + " | ".join(f"{np.mean(data[c][rule]):.3f} ({', '.join(f'{v:.3f}' for v in data[c][rule])})"
                                          for c in cols) + " |" for rule in RULES]
    lines += ["", f"Mean test R@10 (each draw or seed in brackets). `.venv/bin/python scripts/suggest_probe.py --out "
              f"results/experiments/suggest.md` ({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, data)


if __name__ == "__main__":
    main()
