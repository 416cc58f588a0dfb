"""Centring inputs on their corpus's mean rather than the anchors', in classification and retrieval.

Classification (what `ZeroShotClassifier(corpus=...)` and `Collection.classify` now do): MNIST-5k
with scikit-learn digit anchors, reported on two halves (a random half, seed 0, on which the choice
was looked at first, and the other half), and emoji groups / subgroups (Twemoji inputs, Noto anchors
of other concepts, the corpus every Twemoji drawing). Retrieval (not adopted): the pictures suite's
sources, text -> image, the gallery's items centred on the gallery's mean, on the suite's four
validation folds and its test split; plain ASIF and the engine default, each both ways.

    .venv/bin/python scripts/corpus_centring_domains.py --out results/experiments/corpus_centring/README.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from retrieval.evaluation.benchlib import classifier_sides, report


def classification(image, text):
    from retrieval.api.classify import ZeroShotClassifier
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_WHITEN
    from retrieval.evaluation.data import DIGIT_WORDS, load_digits, load_emoji
    from retrieval.evaluation.harness import CAPTION, emoji_splits

    default = {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER, "whiten": DEFAULT_WHITEN}
    configs = [("plain ASIF k=64 p=8 (baseline; it does not centre)", {"kind": "asif", "k": 64, "p": 8.0, "center": False}),
               (f"the collection's retrieval settings (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g}, whitened lambda "
                f"{DEFAULT_WHITEN:g}; classification now leaves whitening out)", default),
               ("the same without whitening (classification's choice since, no bank here)", dict(default, whiten=0.0)),
               ("k=256 p=4 centred (an earlier default)", {"kind": "asif", "k": 256, "p": 4.0, "center": True})]
    rows = []
    d = load_digits(image, text, "a handwritten digit {}", False)
    y = np.array([DIGIT_WORDS[i] for i in d.mnist_labels])
    first = np.random.default_rng(0).permutation(len(y))[:len(y) // 2]
    other = np.setdiff1d(np.arange(len(y)), first)
    for name, params in configs:
        for corpus in (None, d.mnist) if params.get("center") else (None,):
            clf = ZeroShotClassifier(list(DIGIT_WORDS), ["a handwritten digit {}"], text_encoder=text,
                                     **classifier_sides(params, d.sk_captions, d.sk_images), keep_whitening=True,
                                     corpus=corpus)
            preds = clf.predict(d.mnist, k=5)
            t1 = np.array([p.labels[0] for p in preds]) == y
            t5 = np.array([t in p.labels for p, t in zip(preds, y)])
            rows.append({"suite": "MNIST digits", "method": name, "centred on": clf.centred_on,
                         "top-1 (first half / other half / all)": f"{t1[first].mean():.3f} / {t1[other].mean():.3f} / "
                                                                  f"{t1.mean():.3f}",
                         "top-5 (all)": f"{t5.mean():.3f}"})
        print(rows[-1], flush=True)
    data = load_emoji(image, text, [CAPTION], show_progress_bar=False)
    s = emoji_splits(data.names)
    anchors, ev = s["anchor"], np.array([i for i in s["query"] if data.groups[i] != "None"])
    T, In, It = data.texts[CAPTION], data.images["noto"], data.images["twemoji"]
    templates = ["an emoji of {}", "an emoji from the category {}"]
    for level, truth in (("groups", data.groups), ("subgroups", data.subgroups)):
        labels = sorted({str(x).replace("-", " ") for x in truth[ev]})
        want = [str(truth[i]).replace("-", " ") for i in ev]
        for name, params in configs:
            for corpus in (None, It) if params.get("center") else (None,):
                clf = ZeroShotClassifier(labels, templates, text_encoder=text,
                                         **classifier_sides(params, T[anchors], In[anchors]), keep_whitening=True,
                                         corpus=corpus)
                preds = clf.predict(It[ev], k=5)
                rows.append({"suite": f"emoji {level}", "method": name, "centred on": clf.centred_on,
                             "top-1 (first half / other half / all)":
                                 f"{np.mean([p.labels[0] == t for p, t in zip(preds, want)]):.3f}",
                             "top-5 (all)": f"{np.mean([t in p.labels for p, t in zip(preds, want)]):.3f}"})
            print(rows[-1], flush=True)
    return rows


def retrieval(image, text, sources):
    from retrieval.core.metrics import lexicographic, retrieval_metrics
    from retrieval.core.projector import RelativeProjector
    from retrieval.evaluation.suites import pictures as P

    default = P.engine_default()
    configs = [("plain ASIF k=64 p=8 (baseline; it does not centre)", {"asif": P.PLAIN}),
               ("engine default (bank, whitening, label bridge)", default)]

    def metrics(t, cfg, on_gallery):
        a = dict(cfg["asif"])
        kk, a["k"] = a["k"], min(a["k"], len(t.at))
        at, ai, bg = t.at, t.ai, {}
        if a.pop("background", 0.0) and t.background is not None:
            at, ai = np.vstack([at, t.background[0]]), np.vstack([ai, t.background[1]])
            bg = dict(background=len(t.background[0]), background_weight=cfg["asif"]["background"],
                      background_k=min(kk, len(t.background[0])))
        pt, pi = RelativeProjector(**a, **bg).fit(at), RelativeProjector(**a, **bg).fit(ai)
        if on_gallery:
            pi = pi.centred_on(pi.input_mean(t.g))
        prim = (pt.transform(t.q) @ pi.transform(t.g).T).toarray()
        w = cfg.get("w", 0.0)
        return retrieval_metrics(lexicographic(prim + w * t.labels() if w else prim, pt.dense(t.q) @ pi.dense(t.g).T),
                                 np.arange(len(t.q)))

    rows = []
    for src in sources:
        test, val, _, _ = P.source_tasks(src, image, text, False)
        for name, cfg in configs:
            for on_gallery in (False, True) if cfg["asif"].get("center") else (False,):
                v = [metrics(t, cfg, on_gallery) for t in val]
                m = metrics(test, cfg, on_gallery)
                rows.append({"source": src, "method": name, "gallery centred on": "its own mean" if on_gallery
                             else "the anchors' mean", "val R@10": float(np.mean([x["R@10"] for x in v])),
                             "test R@10": m["R@10"], "test R@1": m["R@1"]})
                print(rows[-1], flush=True)
    return rows


def main():
    from retrieval.encoders import load_encoder

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--sources", nargs="*", default=["tuxpaint", "openclipart", "scratch", "emoji"])
    a = ap.parse_args()
    t0 = time.time()
    image, text = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    cls, ret = classification(image, text), retrieval(image, text, a.sources)
    lines = ["# Inputs centred on their corpus's mean", "",
             "Produced by `.venv/bin/python scripts/corpus_centring_domains.py" + (f" --out {a.out}" if a.out else "")
             + f"` in {time.time() - t0:.0f} s, {time.strftime('%Y-%m-%d')}. Encoders: image "
             "`efficientnet-lite0-multi`, text `minilm`.", "",
             "## Classification (adopted: a collection centres its inputs on its items' mean)", "",
             "MNIST: scikit-learn's 8x8 digits as anchors, the 5,000 MNIST digits as corpus and inputs; the first "
             "half (random, seed 0) is where the choice was looked at first. Emoji: Noto anchors of the anchor "
             "concepts, Twemoji drawings of the query concepts as inputs, every Twemoji drawing as corpus (one "
             "figure: no half was held back).", "",
             "| suite | method | inputs centred on | top-1 (first half / other half / all) | top-5 (all) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['suite']} | {r['method']} | {r['centred on']} | {r['top-1 (first half / other half / all)']} "
              f"| {r['top-5 (all)']} |" for r in cls]
    lines += ["", "## Retrieval (not adopted): the gallery centred on its own mean", "",
              "The pictures suite's tasks (`retrieval eval --suite pictures`): text -> image, validation = mean "
              "over its 4 folds of the anchor concepts (the fold's pictures are the gallery), test = its split.", "",
              "| source | method | gallery centred on | val R@10 | test R@10 | test R@1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['method']} | {r['gallery centred on']} | {r['val R@10']:.3f} | "
              f"{r['test R@10']:.3f} | {r['test R@1']:.3f} |" for r in ret]
    report(lines, a.out, {"classification": cls, "retrieval": ret})


if __name__ == "__main__":
    main()
