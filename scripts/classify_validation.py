"""Zero-shot classification's own settings, chosen on validation folds in two domains.

Classification inherits the collection's projector (k, p, centring, whitening: chosen for
retrieval) and centres its inputs on the collection's items. Whether classification should keep the
collection's whitening, and its p, is chosen here on validation data only, by the best mean top-1
over three tasks, and whether it should use the collection's background bank (as retrieval does:
the bank block beside the anchors, weight 1.5; for emoji the picture sources' pairs, since the
engine's emoji bank holds the concepts classified; for MNIST the engine's emoji bank):

* emoji groups and subgroups: the emoji suite's 4 validation folds of the *anchor* concepts (each
  fold's Twemoji drawings classified with the Noto anchors of the other three folds; corpus: every
  Twemoji drawing), never the query concepts the emoji-groups suite reports;
* MNIST: the first half (random, seed 0) of MNIST-5k with scikit-learn's digit anchors (corpus: all
  5,000).

Then the same settings on the held-out data: the emoji-groups suite's query concepts and the other
MNIST half.

    .venv/bin/python scripts/classify_validation.py --out results/experiments/classify_validation.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.evaluation.benchlib import classifier_sides, out_args, report

GRID = [dict(whiten=w, p=p, bank=b) for b in (False, True) for w in (9.0, 0.0) for p in (2.0, 4.0)]


def main():
    from retrieval.api.classify import ZeroShotClassifier
    from retrieval.build.background import DEFAULT_WEIGHT, TEMPLATE
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_WHITEN
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import DIGIT_WORDS, load_digits, load_emoji
    from retrieval.evaluation.harness import CAPTION, emoji_splits
    from retrieval.evaluation.suites.pictures import background_bank

    a, t0 = out_args(__doc__)
    image, text = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    base = {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER, "whiten": DEFAULT_WHITEN}
    data = load_emoji(image, text, sorted({CAPTION, TEMPLATE}), show_progress_bar=False)
    emoji_bank = background_bank("emoji", image, text, False)[:2]  # the picture sources' pairs
    digit_bank = (data.texts[TEMPLATE], data.images["noto"])  # the engine's emoji bank
    s = emoji_splits(data.names)
    T, In, It = data.texts[CAPTION], data.images["noto"], data.images["twemoji"]
    templates = ["an emoji of {}", "an emoji from the category {}"]
    digits = load_digits(image, text, "a handwritten digit {}", False)
    y = np.array([DIGIT_WORDS[i] for i in digits.mnist_labels])
    first = np.random.default_rng(0).permutation(len(y))[:len(y) // 2]
    other = np.setdiff1d(np.arange(len(y)), first)

    def sides(params, at, ai, bank):
        """The classifier's sides, the bank's block beside the anchors when ``params`` ask for it."""
        return classifier_sides({k: v for k, v in params.items() if k != "bank"}, at, ai,
                                bank if params.get("bank") else None)

    def emoji_top1(params, anchors, inputs, truth):
        inputs = np.array([i for i in inputs if data.groups[i] != "None"])
        labels = sorted({str(x).replace("-", " ") for x in truth[inputs]})
        clf = ZeroShotClassifier(labels, templates, text_encoder=text, **sides(params, T[anchors], In[anchors], emoji_bank),
                                 keep_whitening=True, corpus=It)
        want = [str(truth[i]).replace("-", " ") for i in inputs]
        return float(np.mean([p.labels[0] == t for p, t in zip(clf.predict(It[inputs], k=1), want)]))

    def mnist_top1(params, rows):
        clf = ZeroShotClassifier(list(DIGIT_WORDS), ["a handwritten digit {}"], text_encoder=text,
                                 **sides(params, digits.sk_captions, digits.sk_images, digit_bank),
                                 keep_whitening=True, corpus=digits.mnist)
        return float(np.mean(np.array([p.labels[0] for p in clf.predict(digits.mnist[rows], k=1)]) == y[rows]))

    rows = []
    for g in GRID:
        params = dict(base, **g)
        val = {level: float(np.mean([emoji_top1(params, anc, held, truth) for anc, held in s["folds"]]))
               for level, truth in (("groups", data.groups), ("subgroups", data.subgroups))}
        val["mnist"] = mnist_top1(params, first)
        test = {level: emoji_top1(params, s["anchor"], s["query"], truth)
                for level, truth in (("groups", data.groups), ("subgroups", data.subgroups))}
        test["mnist"] = mnist_top1(params, other)
        rows.append({"params": g, "val": val, "val mean": float(np.mean(list(val.values()))), "test": test})
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: r["val mean"])
    now = next(r for r in rows if r["params"] == {"whiten": DEFAULT_WHITEN, "p": DEFAULT_IMAGE_P, "bank": False})

    def name(g):
        return f"whitening lambda {g['whiten']:g}, p {g['p']:g}" + (f", background bank x {DEFAULT_WEIGHT:g}" if g["bank"]
                                                                    else "")

    lines = ["# Classification's own settings, chosen on validation in two domains", "",
             "Produced by `.venv/bin/python scripts/classify_validation.py" + (f" --out {a.out}" if a.out else "")
             + f"` in {time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d')}. k = {DEFAULT_K} (at most the anchors), "
             "centred, inputs centred on their corpus; top-1. Validation: emoji groups and subgroups on the 4 folds "
             "of the anchor concepts, MNIST's first half; test: the emoji-groups suite's query concepts, MNIST's "
             "other half.", "",
             f"Chosen by mean validation top-1: **{name(best['params'])}** (the collection's own settings without "
             f"its bank, {name(now['params'])}, score {now['val mean']:.3f} against {best['val mean']:.3f}).", "",
             "| settings | val groups | val subgroups | val MNIST | val mean | test groups | test subgroups | test MNIST |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {'**' + name(r['params']) + '**' if r is best else name(r['params'])} | {r['val']['groups']:.3f} | "
              f"{r['val']['subgroups']:.3f} | {r['val']['mnist']:.3f} | {r['val mean']:.3f} | {r['test']['groups']:.3f} | "
              f"{r['test']['subgroups']:.3f} | {r['test']['mnist']:.3f} |" for r in rows]
    report(lines, a.out, {"rows": rows, "chosen": best["params"]})


if __name__ == "__main__":
    main()
