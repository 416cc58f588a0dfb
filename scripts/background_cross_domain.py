"""Emoji anchors used on other domains, with and without the emoji background bank.

The issue's second scenario: a user's anchors are emoji (the demo's: five drawing styles merged
with WCCN, all 1,758 concepts; or Noto alone) and the corpus is another domain (every picture of
Tux Paint, Open Clip Art, Scratch; each caption a query). Rows: plain ASIF (Noto anchors, k=64 p=8),
the views default without a bank, the views default with the emoji bank appended as is (beta 1.5,
bank k 32), and what the engine does: the bank less the rows the anchors already have
(retrieval/build/background.py: without_duplicates), counted here on the real tables. Label bridge
at the views weight (0.2) in the views rows. Nothing is chosen here.

    .venv/bin/python scripts/background_cross_domain.py --out results/experiments/background/cross_domain.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.evaluation.benchlib import out_args, report


def main():
    import pyarrow.parquet as pq

    from retrieval.build.background import DEFAULT_WEIGHT, emoji_bank, without_duplicates
    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P
    from retrieval.core.metrics import lexicographic, retrieval_metrics
    from retrieval.core.projector import RelativeProjector
    from retrieval.encoders import load_encoder
    from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT, class_vectors, imagenet_names
    from retrieval.evaluation.data import data_dir, load_emoji, load_pictures
    from retrieval.evaluation.harness import CAPTION, anchor_views, view_anchors
    from retrieval.evaluation.suites.pictures import image_logits, label_bridge

    a, t0 = out_args(__doc__)
    image, text = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    data = load_emoji(image, text, [CAPTION], show_progress_bar=False, svg_styles=True)
    classes = class_vectors(text, imagenet_names())
    at, ai = data.texts[CAPTION], data.images["noto"]
    views = anchor_views(data, "twemoji")
    _, norm, proto, ptxt = view_anchors(data, np.arange(len(data.names)), views)
    # what the engine keeps of its bank beside these anchors (the Noto anchors' table; the views add rows)
    table = pq.read_table(data_dir("emoji") / "anchors.parquet")
    folder = data_dir("emoji")
    kept = without_duplicates(emoji_bank(show_progress_bar=False), [str(folder / p) for p in table.column("image").to_pylist()],
                              table.column("caption").to_pylist())
    rows = []
    for src in ("tuxpaint", "openclipart", "scratch"):
        d = load_pictures(src, image, text, False)
        lab = label_bridge(image_logits(d.paths, src, False), classes, d.texts)

        def ev(kw, a_t, a_i, g, w):
            pt, pi = RelativeProjector(**kw).fit(a_t), RelativeProjector(**kw).fit(a_i)
            prim = (pt.transform(d.texts) @ pi.transform(g).T).toarray()
            return retrieval_metrics(lexicographic(prim + w * lab if w else prim, pt.dense(d.texts) @ pi.dense(g).T),
                                     np.arange(len(d.texts)))

        vk = dict(k=DEFAULT_VIEWS_K, p=DEFAULT_VIEWS_P, center=True)
        g = norm.transform(d.images)
        rows.append((src, len(d.texts), ev(dict(k=64, p=8.0, center=False), at, ai, d.images, 0.0),
                     ev(vk, ptxt, norm.transform(proto), g, DEFAULT_VIEWS_WEIGHT),
                     ev(dict(vk, background=len(at), background_weight=DEFAULT_WEIGHT, background_k=DEFAULT_VIEWS_K),
                        np.vstack([ptxt, at]), np.vstack([norm.transform(proto), norm.transform(ai)]), g,
                        DEFAULT_VIEWS_WEIGHT)))
        print(rows[-1][0], [f"{m['R@10']:.3f}" for m in rows[-1][2:]], flush=True)
    lines = ["# Emoji anchors on other domains, with and without the emoji background bank", "",
             "Produced by `.venv/bin/python scripts/background_cross_domain.py" + (f" --out {a.out}" if a.out else "")
             + f"` in {time.time() - t0:.0f} s. Anchors: the 1,758 emoji concepts ({' + '.join(views)}, merged with "
             "WCCN, k=32 p=2, label weight 0.2); queries: every caption of the source, gallery: its pictures. "
             f"The engine keeps {0 if kept is None else len(kept)} of the emoji bank's pairs beside these anchors "
             "(the rest share a caption or a picture with them), so it builds them without a bank: the views "
             "default row is what it does.", "",
             "| source | queries | plain ASIF (Noto, k=64 p=8) R@10 / R@1 | views default, no bank (**the engine here**) "
             "| views + the emoji bank kept whole (beta 1.5) |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {n} | " + " | ".join(f"{m['R@10']:.3f} / {m['R@1']:.3f}" for m in ms) + " |"
              for s, n, *ms in rows]
    report(lines, a.out, {"kept": 0 if kept is None else len(kept),
                          "rows": [{"source": s, "queries": n, "plain": p, "views": v, "views+bank": b}
                                   for s, n, p, v, b in rows]})


if __name__ == "__main__":
    main()
