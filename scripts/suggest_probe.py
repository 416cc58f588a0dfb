"""Which items to ask captions for: the selectors of retrieval/core/selection.py against random choice.

For ``retrieval suggest`` (retrieval/build/captioning.py): the same number of corpus items captioned,
chosen at random (3 draws) or by a selector over the items' embeddings (fps and kmeans with 2 seeds;
coverage, deterministic, the rule suggest uses), with the emoji pairs as anchors and self-anchoring as
a build does it (retrieval/evaluation/suites/captions.py: ``one_draw``). Test R@10 of the items left
uncaptioned (so each rule is scored on the items it did not choose). A second table: a corpus already
10 % captioned at random (3 draws) gets 10 % more, chosen by suggest's rule (coverage starting from
what the captioned items cover) or at random.

    .venv/bin/python scripts/suggest_probe.py --out results/experiments/suggest.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.build.background import TEMPLATE
from retrieval.core.selection import coverage_select, select
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


def added(rule: str, images: np.ndarray, have: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``have`` and ``n`` more rows, chosen by ``rule`` among the others."""
    rest = np.setdiff1d(np.arange(len(images)), have)
    more = (np.random.default_rng(100 + seed).choice(rest, n, replace=False) if rule == "random"
            else rest[coverage_select(images[rest], images, n, covered=images[have])])
    return np.sort(np.concatenate([have, more]))


def main() -> None:
    args, start = out_args(__doc__)
    img, txt = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    classes = class_vectors(txt, imagenet_names())
    em = load_emoji(img, txt, [TEMPLATE], False)
    given = C.Anchors("emoji", em.texts[TEMPLATE], em.images["noto"])
    data, more = {}, {}
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
        n = int(round(0.10 * len(d.images)))

        def r10(rows, d=d, labels=labels):
            return float(C.one_draw(given, (d.texts, d.images, d.captions), rows, labels)[C.ROWS[3]].mean())

        bases = [chosen("random", d.images, n, s) for s in range(3)]
        more[f"{name} 10% + {n}"] = {rule: [r10(added(rule, d.images, b, n, s)) for s, b in enumerate(bases)]
                                     for rule in ("random", "coverage")}
    cols = list(data)
    lines = ["# Which items to caption: selectors against random choice", "", __doc__.split("\n\n")[1].replace("\n", " "),
             "", "| rule | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {rule} | " + " | ".join(f"{np.mean(data[c][rule]):.3f} ({', '.join(f'{v:.3f}' for v in data[c][rule])})"
                                          for c in cols) + " |" for rule in RULES]
    lines += ["", "Already 10 % captioned (3 random draws), 10 % more chosen at random or by suggest's rule:", "",
              "| added by | " + " | ".join(more) + " |", "|---|" + "---:|" * len(more)]
    lines += [f"| {rule} | " + " | ".join(f"{np.mean(more[c][rule]):.3f} ({', '.join(f'{v:.3f}' for v in more[c][rule])})"
                                          for c in more) + " |" for rule in ("random", "coverage")]
    lines += ["", f"Mean test R@10 (each draw or seed in brackets). `.venv/bin/python scripts/suggest_probe.py --out "
              f"results/experiments/suggest.md` ({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {"from_none": data, "added": more})


if __name__ == "__main__":
    main()
