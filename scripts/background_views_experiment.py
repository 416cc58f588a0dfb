"""The background bank beside anchors drawn several ways (views), on the emoji-xstyle folds.

The emoji views default (five drawing styles merged into prototypes, WCCN style normaliser, k=32
p=2, label weight 0.2; Twemoji gallery) with a background bank appended as the engine appends it
(``RelativeProjector(background=N, background_weight=beta, background_k=kb)``; the bank's images go
through the task's own style normaliser, as a build's do). The engine's bank is every Noto emoji,
which holds the query concepts here, so the bank is the pairs of the three picture sources of
``retrieval eval --suite pictures`` (Tux Paint, Open Clip Art, Scratch). beta and the bank's k are
chosen by the best mean validation R@10 over the emoji-xstyle folds (seen + unseen); test rows for
every setting.

    .venv/bin/python scripts/background_views_experiment.py --out results/experiments/background/views.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P
from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import RelativeProjector
from retrieval.encoders import load_encoder
from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT, class_vectors, imagenet_names, label_vectors
from retrieval.evaluation.benchlib import report

GRID = [(0.0, 0)] + [(b, kb) for kb in (DEFAULT_VIEWS_K, 256) for b in (0.5, 1.0, 1.5, 2.0)]


def main():
    import pyarrow.parquet as pq

    from retrieval.evaluation.data import data_dir, load_emoji
    from retrieval.evaluation.harness import CAPTION, EmojiTask, anchor_views, emoji_splits, view_anchors
    from retrieval.evaluation.suites.pictures import background_bank, image_logits

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/experiments/background/views.md")
    a = ap.parse_args()
    t0 = time.time()
    image, text = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    data = load_emoji(image, text, [CAPTION], show_progress_bar=False, svg_styles=True)
    views, s = anchor_views(data, "twemoji"), emoji_splits(data.names)
    logits = image_logits([r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()],
                          "emoji-twemoji")
    classes = class_vectors(text, imagenet_names())
    bank_t, bank_i, about = background_bank("emoji", image, text)

    def task(anchors, queries):
        t = EmojiTask(data, anchors, queries, views=views)
        t.norm = view_anchors(data, anchors, views)[1]  # the style normaliser a build would learn
        return t

    val = [task(a_, q) for a_, q in s["folds"]] + [task(s["anchor"], q) for _, q in s["folds"]]
    tests = {"unseen": task(s["anchor"], s["query"]), "seen": task(s["all"], s["query"])}

    def score(t, beta, kb):
        kw = dict(k=DEFAULT_VIEWS_K, p=DEFAULT_VIEWS_P, center=True)
        at, ag = t.aq, t.ag
        if beta:
            kw.update(background=len(bank_t), background_weight=beta, background_k=kb)
            at, ag = np.vstack([t.aq, bank_t]), np.vstack([t.ag, t.norm.transform(bank_i)])
        pt, pi = RelativeProjector(**kw).fit(at), RelativeProjector(**kw).fit(ag)
        prim = (pt.transform(t.q) @ pi.transform(t.g).T).toarray()
        lab = l2_normalise(t.q) @ label_vectors(logits[t.queries], classes).T
        return lexicographic(prim + DEFAULT_VIEWS_WEIGHT * lab, pt.dense(t.q) @ pi.dense(t.g).T)

    rows = []
    for beta, kb in GRID:
        ms = [retrieval_metrics(score(t, beta, kb), np.arange(len(t.q))) for t in val]
        v = (float(np.mean([m["R@10"] for m in ms])), float(np.mean([m["MRR"] for m in ms])))
        te = {r: retrieval_metrics(score(t, beta, kb), np.arange(len(t.q))) for r, t in tests.items()}
        rows.append((beta, kb, v, te))
        print(beta, kb, v, {r: (m["R@10"], m["R@1"]) for r, m in te.items()}, flush=True)
    chosen = max(rows, key=lambda r: (round(r[2][0], 4), round(r[2][1], 4)))
    lines = ["# The background bank beside the emoji views default", "",
             f"Produced by `.venv/bin/python scripts/background_views_experiment.py --out {a.out}` in "
             f"{time.time() - t0:.0f} s. Anchors: the five drawing styles merged into prototypes with WCCN "
             f"({' + '.join(views)}), k={DEFAULT_VIEWS_K} p={DEFAULT_VIEWS_P:g}, label weight {DEFAULT_VIEWS_WEIGHT:g}; "
             f"Twemoji gallery, text -> image; bank: {about} (the engine's emoji bank would hold the query concepts), "
             "its images through each task's style normaliser. Validation: the emoji-xstyle folds, seen + unseen; "
             f"chosen by the best mean validation R@10 (then MRR): beta {chosen[0]:g}, bank k {chosen[1]}.", "",
             "| beta | bank k | mean val R@10 | mean val MRR | unseen R@10 / R@1 | seen R@10 / R@1 |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {b:g}{' (no bank: the views default before)' if not b else ''}"
              f"{' (**chosen**)' if (b, kb) == chosen[:2] else ''} | {kb or '-'} | {v[0]:.3f} | {v[1]:.3f} | "
              f"{te['unseen']['R@10']:.3f} / {te['unseen']['R@1']:.3f} | {te['seen']['R@10']:.3f} / {te['seen']['R@1']:.3f} |"
              for b, kb, v, te in rows]
    report(lines, a.out, {"chosen": {"beta": chosen[0], "bank_k": chosen[1]},
                          "rows": [{"beta": b, "bank_k": kb, "val_R@10": v[0], "val_MRR": v[1],
                                    "test": {r: {m: x[m] for m in ("R@1", "R@10", "MRR")} for r, x in te.items()}}
                                   for b, kb, v, te in rows]})


if __name__ == "__main__":
    main()
