"""emoji-groups: zero-shot classification of emoji into Unicode groups and subgroups."""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from retrieval.core.metrics import paired_interval
from retrieval.evaluation.harness import (
    CAPTION,
    LITE_PAIR,
    TEMPLATES,
    Suite,
    anchor_views,
    emoji_splits,
    fewer_views,
    lite_pair_available,
    lite_pair_views_kp,
    view_anchors,
)
from retrieval.evaluation.report import Report


def emoji_groups(report: Report, data, text_encoder, more: Optional[Dict] = None, bank=None) -> Dict:
    """``bank``: (texts, images, what it is) of a background bank whose concepts are not emoji, or None."""
    from retrieval.api.classify import ZeroShotClassifier

    s = emoji_splits(data.names)
    # A few Twemoji concepts are missing from emoji-test.txt and have no group: not evaluated.
    anchors, evaluated = s["anchor"], np.array([i for i in s["query"] if data.groups[i] != "None"])
    templates = ["an emoji of {}", "an emoji from the category {}"]
    report.text(f"""
Zero-shot classification of the {len(evaluated)} Twemoji images of the query concepts that have a
group ({len(s['query']) - len(evaluated)} have none) into Unicode
emoji groups and subgroups (`emoji-test.txt`). Anchors: the {len(anchors)} *other* concepts' Noto
images with captions "{CAPTION}", so no evaluated concept is an anchor. Prompts per label:
{templates}, averaged per class. Subgroup names have '-' replaced by spaces. As a collection of
Twemoji drawings would, every row but one centres its inputs on the mean of that corpus (all
{len(data.names)} Twemoji drawings, labels unused) rather than on the anchors' mean
(retrieval/api/classify.py); the row marked "the default before" does not. Classification also
leaves a collection's whitening out unless a row says otherwise, and keeps its background bank
(results/experiments/classify_validation.md).""")
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_WHITEN

    # (row name, projector parameters, anchors: "noto", "pooled" (Noto + Twemoji) or a tuple of view
    # styles (merged, with WCCN), the embeddings to use). A row's "whiten" is the whitening the classifier
    # is asked for; without one it uses its own default, none (retrieval/api/classify.py: CLASSIFY_WHITEN),
    # whatever the collection was built with.
    single = {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER}
    whitened = dict(single, whiten=DEFAULT_WHITEN)
    configs = [("ASIF k=64 p=8, raw (baseline)", {"kind": "asif", "k": 64, "p": 8.0, "center": False}, "noto", data),
               (f"ASIF default without the background bank (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g} centred; "
                f"classification leaves the collection's whitening out)", single, "noto", data),
               (f"ASIF default with the collection's whitening (lambda {DEFAULT_WHITEN:g}), without the bank",
                whitened, "noto", data),
               (f"ASIF default with the collection's whitening (lambda {DEFAULT_WHITEN:g}), without the bank, inputs "
                f"centred on the anchors' mean (the default before)", whitened, "noto", data),
               ("ASIF default without the bank, anchors pooled from both styles", single, "pooled", data)]
    if bank is not None:  # the engine's emoji bank would hold the evaluated concepts: the picture sources' pairs
        from retrieval.build.background import DEFAULT_WEIGHT as BANK_WEIGHT

        n = len(bank[0])
        configs.insert(1, (f"**ASIF default** (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g} centred, + background bank x "
                           f"{BANK_WEIGHT:g}: {bank[2]}, since the engine's emoji bank would hold the evaluated "
                           f"concepts; no whitening)",
                           dict(single, background=n, background_weight=BANK_WEIGHT, background_k=min(DEFAULT_K, n)),
                           "bank", data))
    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P

    views_kp = {"kind": "asif", "k": DEFAULT_VIEWS_K, "p": DEFAULT_VIEWS_P, "center": DEFAULT_CENTER}
    all_views = anchor_views(data, "twemoji")
    # what a build does with an anchor table of views (the gallery's style never among them)
    for views in [vs for _, vs in fewer_views(all_views)] + [all_views]:
        if len(views) > 1 and all(v in data.images for v in views):
            configs.append((f"ASIF views default (k={DEFAULT_VIEWS_K} p={DEFAULT_VIEWS_P:g}), views "
                            f"{' + '.join(views)} (prototypes + WCCN)", views_kp, views, data))
    # the same with another image encoder (the opt-in pair), at the k, p its views section chose
    for name, (d, kp) in (more or {}).items():
        views = anchor_views(d, "twemoji")
        if len(views) > 1:
            configs.append((f"ASIF views, image encoder {name} (k={kp['k']} p={kp['p']:g}), views {' + '.join(views)}",
                            {"kind": "asif", "k": kp["k"], "p": kp["p"], "center": DEFAULT_CENTER}, views, d))
    rows, gains = [], {}
    for level, truth in (("group", data.groups), ("subgroup", data.subgroups)):
        labels_all = sorted({str(x) for x in truth[evaluated]})
        pretty = {lab: lab.replace("-", " ") for lab in labels_all}
        correct = []  # per config, each image's top-1 hit: the default's interval against the baseline
        for name, params, kind, d in configs:
            T, In, It = d.texts[CAPTION], d.images["noto"], d.images["twemoji"]
            style = None
            if isinstance(kind, tuple):
                _, style, a_img, a_txt = view_anchors(d, anchors, kind)
            elif kind == "bank":
                a_img, a_txt = np.vstack([In[anchors], bank[1]]), np.vstack([T[anchors], bank[0]])
            else:
                a_img = np.vstack([In[anchors], It[anchors]]) if kind == "pooled" else In[anchors]
                a_txt = np.vstack([T[anchors], T[anchors]]) if kind == "pooled" else T[anchors]
            clf = ZeroShotClassifier([pretty[x] for x in labels_all], templates, text_encoder=text_encoder,
                                     text_anchors=a_txt, image_anchors=a_img, projector_params=params, style=style,
                                     corpus=None if "(the default before)" in name else d.images["twemoji"],
                                     whiten=params.get("whiten", 0.0))
            preds = clf.predict(It[evaluated], k=5)
            y = [pretty[str(x)] for x in truth[evaluated]]
            correct.append(np.array([p.labels[0] == t for p, t in zip(preds, y)], float))
            top1 = float(np.mean(correct[-1]))
            top5 = float(np.mean([t in p.labels[:5] for p, t in zip(preds, y)]))
            rows.append([level, len(labels_all), name, top1, top5, 1 / len(labels_all),
                         min(1.0, 5 / len(labels_all))])
        # row 1 is the baseline, row 2 the one-style default (without a bank where none could be had)
        gains[level] = paired_interval(correct[0], correct[1])
    report.table("Zero-shot emoji groups and subgroups (Noto anchors of other concepts -> Twemoji images)",
                 ["level", "classes", "method", "top-1", "top-5", "chance top-1", "chance top-5"], rows)
    report.text("The one-style default (the second row of each level) against the baseline (the first), top-1: " +
                "; ".join(f"{level} {g['gain']:+.3f}, 95% interval {g['low']:+.3f} … {g['high']:+.3f}"
                          for level, g in gains.items()) +
                f" (a paired bootstrap over the {len(evaluated)} images, 10,000 resamples, "
                "`retrieval.core.metrics.paired_interval`).")
    out = {"rows": rows, "gains top-1": gains}
    report.data("summary.json", out)
    return out


def run(report: Report, ctx) -> Dict:
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import load_emoji

    # the npm styles (OpenMoji, Fluent Emoji, EmojiOne...) are optional: sections that need them say so
    data = load_emoji(ctx.image, ctx.text, list(TEMPLATES), ctx.show_progress_bar, svg_styles=True)
    more = {}
    if len(anchor_views(data, "twemoji")) > 1 and lite_pair_available():
        pair_data = load_emoji(load_encoder(LITE_PAIR, "image"), ctx.text, [CAPTION], ctx.show_progress_bar,
                               svg_styles=True)
        more[LITE_PAIR] = (pair_data, lite_pair_views_kp())
        ctx.encoders["image (last row)"] = LITE_PAIR
    from retrieval.evaluation.suites.pictures import background_bank

    return emoji_groups(report, data, ctx.text, more, background_bank("emoji", ctx.image, ctx.text, ctx.show_progress_bar))


SUITE = Suite("emoji-groups", "zero-shot classification of emoji into Unicode groups and subgroups", run)
