"""Pseudo-pairs from the label head, for anchors of another domain than the corpus (issue 35).

With no caption in the corpus, the image network's ImageNet head still names what each picture
shows. The corpus items it is most sure of, paired with the text of what it names, are pairs of the
corpus's own domain that cost nothing: fed to self-anchoring as it is (retrieval/build/self_anchors.py:
the given anchors moved to the corpus's domain, the pseudo-pairs appended; no validation, since
there is no caption to validate on), one item per predicted class (the most confident), the top
fraction by confidence. Their text side is the class name as the text encoder encodes it ("name"),
or the image's label vector, the softmax-weighted mix of the class names ("soft").

Cross-domain protocol: every ordered pair of anchors and corpus (the emoji pack; another picture
source with the emoji bank, as a build adds it), the corpus's captions as queries (none is used to
make a pair: pseudo-pairs are the head's names, never a caption). Rows: plain ASIF, the default
build (the given anchors alone), the given anchors moved to the corpus's mean alone (no pairs), and
pseudo-pairs at each fraction. Test R@10 with the paired 95 % interval against the default.
Nothing here is chosen on these figures; it is a probe of whether the idea carries.

    .venv/bin/python scripts/pseudo_pairs_probe.py --out results/experiments/pseudo_pairs.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.self_anchors import corpus_mean, merged
from retrieval.core.metrics import paired_interval, query_recall
from retrieval.encoders.labels import label_vectors
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.suites import captions as C
from retrieval.evaluation.suites.pictures import image_logits, label_bridge

SOURCES = ("tuxpaint", "scratch")
FRACTIONS = (0.1, 0.3, 1.0)  # of the predicted classes (one item each), most confident first


def pseudo(logits: np.ndarray, fraction: float) -> np.ndarray:
    """Corpus rows: the most confident item of each predicted class, the top ``fraction`` of them."""
    z = logits - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    top, conf = prob.argmax(1), prob.max(1)
    best = {}
    for i in np.argsort(-conf, kind="stable"):
        best.setdefault(int(top[i]), int(i))
    rows = sorted(best.values(), key=lambda i: -conf[i])
    return np.asarray(rows[:max(1, int(round(fraction * len(rows))))], np.int64)


def r10(rec, txt, med, bank, d, labels):
    return query_recall(C.scores(rec, txt, med, bank, d.texts, d.images, labels), np.arange(len(d.images)), 10)


def shape(n: int):
    """The build's recipe for ``n`` image anchors."""
    return recipe(AnchorShape(n, "image"), None, BuildOptions())


def regime(given: C.Anchors, d, logits, classes) -> dict:
    labels = label_bridge(logits, classes, d.texts)
    base = r10(shape(len(given.med)), given.txt, given.med, given.bank, d, labels)
    rows = {"plain ASIF": r10(C.PLAIN, given.txt, given.med, None, d, labels), "default (given alone)": base}
    mean = corpus_mean(d.images)
    moved = np.asarray(given.med, np.float32) - given.med.mean(0) + mean
    rows["given moved to the corpus's mean"] = r10(shape(len(moved)), given.txt, moved.astype(np.float32),
                                                   given.bank, d, labels)
    hard, soft = np.argmax(logits, 1), label_vectors(logits, classes)
    for f in FRACTIONS:
        chosen = pseudo(logits, f)
        for kind, txt in (("name", classes[hard[chosen]]), ("soft", soft[chosen])):
            med, t = merged(given.med, given.txt, d.images[chosen], np.asarray(txt, np.float32), mean)
            rows[f"+ pseudo-pairs ({kind}), {f:.0%} of the predicted classes"] = r10(shape(len(med)), t, med,
                                                                                    given.bank, d, labels)
    out = {k: (float(v.mean()), paired_interval(base, v)) for k, v in rows.items()}
    out["pairs"] = [len(pseudo(logits, f)) for f in FRACTIONS]
    return out


def main() -> None:
    args, start = out_args(__doc__)
    everything, emoji, classes = C.default_data()
    data = {s: everything[s] for s in SOURCES}
    results = {}
    for name, d in data.items():
        logits = image_logits(d.paths, name)
        givens = [C.Anchors("emoji", *emoji)] + [C.Anchors(o, data[o].texts, data[o].images, emoji)
                                                 for o in data if o != name]
        for given in givens:
            results[f"{given.name} anchors -> {name} ({len(d.images)})"] = regime(given, d, logits, classes)
    cols = list(results)
    lines = ["# Pseudo-pairs from the label head, anchors of another domain", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2].replace("\n", " "), "",
             "| row | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in [r for r in results[cols[0]] if r != "pairs"]:
        cells = []
        for c in cols:
            mean, iv = results[c][row]
            cells.append(f"{mean:.3f}" + ("" if row.startswith(("plain", "default")) else
                                         f" ({iv['gain']:+.3f}, {iv['low']:+.3f} … {iv['high']:+.3f})"))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    pairs = "; ".join(f"{c}: {', '.join(map(str, results[c]['pairs']))}" for c in cols)
    lines += ["", f"Test R@10 of every corpus item by its caption; in brackets the paired gain over the default with "
                  f"its 95 % interval. Pseudo-pairs at {', '.join(f'{f:.0%}' for f in FRACTIONS)}: {pairs}. `.venv/bin/python scripts/pseudo_pairs_probe.py --out "
                  f"results/experiments/pseudo_pairs.md` ({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {c: {r: ({"r10": v[0], "vs_default": v[1]} if r != "pairs" else v)
                                 for r, v in results[c].items()} for c in cols})


if __name__ == "__main__":
    main()
