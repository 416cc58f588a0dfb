"""emoji-groups: zero-shot classification of emoji into Unicode groups and subgroups."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

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
    from retrieval.api.classify import Side, ZeroShotClassifier
    from retrieval.evaluation.classification import ASIF_ONLY

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
    configs = classifier_configs(data, anchors, more, bank)
    rows, gains = [], {}
    for level, truth in (("group", data.groups), ("subgroup", data.subgroups)):
        labels_all = sorted({str(x) for x in truth[evaluated]})
        pretty = {lab: lab.replace("-", " ") for lab in labels_all}
        correct = []  # per config, each image's top-1 hit: the default's interval against the baseline
        for name, (spec, text_spec), whitened, kind, d in configs:
            T, In, It = d.texts[CAPTION], d.images["noto"], d.images["twemoji"]
            style, bt, bi = None, None, None
            if isinstance(kind, tuple):
                _, style, a_img, a_txt = view_anchors(d, anchors, kind)
            elif kind == "bank":
                a_img, a_txt, bt, bi = In[anchors], T[anchors], bank[0], bank[1]
            else:
                a_img = np.vstack([In[anchors], It[anchors]]) if kind == "pooled" else In[anchors]
                a_txt = np.vstack([T[anchors], T[anchors]]) if kind == "pooled" else T[anchors]
            clf = ZeroShotClassifier([pretty[x] for x in labels_all], templates, text_encoder=text_encoder,
                                     image=Side(spec, a_img, bi), text=Side(text_spec, a_txt, bt), style=style,
                                     corpus=None if "(the default before)" in name else d.images["twemoji"],
                                     keep_whitening=whitened, weights=ASIF_ONLY)
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


def classifier_configs(data, anchors, more: Optional[Dict] = None, bank=None) -> List[Tuple]:
    """(row name, the collection's projector specs (image, text), its whitening kept, anchors: "noto",
    "pooled" (Noto + Twemoji), "bank" or a tuple of view styles (merged, with WCCN), the embeddings to
    use). The defaults are what a build's recipe makes of these anchors; classification leaves their
    whitening out unless a row keeps it (retrieval/api/classify.py: Side.edited)."""
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.core.projector import chain_spec

    rec = recipe(AnchorShape(len(anchors), "image"), None, BuildOptions())
    single = rec.spec()
    configs = [("ASIF k=64 p=8, raw (baseline)", (chain_spec(k=64, p=8.0),) * 2, False, "noto", data),
               (f"ASIF default without the background bank (k={rec.k} p={rec.p:g} centred; "
                f"classification leaves the collection's whitening out)", (single,) * 2, False, "noto", data),
               (f"ASIF default with the collection's whitening (lambda {rec.whiten:g}), without the bank",
                (single,) * 2, True, "noto", data),
               (f"ASIF default with the collection's whitening (lambda {rec.whiten:g}), without the bank, inputs "
                f"centred on the anchors' mean (the default before)", (single,) * 2, True, "noto", data),
               ("ASIF default without the bank, anchors pooled from both styles", (single,) * 2, False, "pooled", data)]
    if bank is not None:  # the engine's emoji bank would hold the evaluated concepts: the picture sources' pairs
        configs.insert(1, (f"**ASIF default** (k={rec.k} p={rec.p:g} centred, + background bank x "
                           f"{rec.background_weight:g}: {bank[2]}, since the engine's emoji bank would hold the "
                           f"evaluated concepts; no whitening)", (rec.spec(n_bank=len(bank[0])),) * 2, False, "bank",
                           data))
    views = recipe(AnchorShape(len(anchors), "image", has_views=True), None, BuildOptions())
    views_specs = (views.spec(style=True), views.spec())
    all_views = anchor_views(data, "twemoji")
    # what a build does with an anchor table of views (the gallery's style never among them)
    for vs in [vs for _, vs in fewer_views(all_views)] + [all_views]:
        if len(vs) > 1 and all(v in data.images for v in vs):
            configs.append((f"ASIF views default (k={views.k} p={views.p:g}), views "
                            f"{' + '.join(vs)} (prototypes + WCCN)", views_specs, False, vs, data))
    # the same with another image encoder (the opt-in pair), at the k, p its views section chose
    for name, (d, kp) in (more or {}).items():
        vs = anchor_views(d, "twemoji")
        if len(vs) > 1:
            pair = dict(k=kp["k"], p=kp["p"], center=views.center)
            configs.append((f"ASIF views, image encoder {name} (k={kp['k']} p={kp['p']:g}), views {' + '.join(vs)}",
                            (chain_spec(**pair, style=True), chain_spec(**pair)), False, vs, d))
    return configs


def class_tasks(ctx, bank=None) -> Dict:
    """{level: (validation tasks, one a fold of the anchor concepts; the test task)} of emoji groups and
    subgroups, as a collection of Twemoji drawings built on the Noto anchors classifies them (its
    corpus: every Twemoji drawing; its bank: ``bank``, default the picture sources' pairs)."""
    import pyarrow.parquet as pq

    from retrieval.api.classify import Side
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.evaluation.classification import ClassTask
    from retrieval.evaluation.data import data_dir, load_emoji
    from retrieval.evaluation.suites.pictures import background_bank, image_logits

    data = load_emoji(ctx.image, ctx.text, [CAPTION], show_progress_bar=ctx.show_progress_bar)
    bank = bank or background_bank("emoji", ctx.image, ctx.text, ctx.show_progress_bar)
    bt, bi = (None, None) if bank is None else bank[:2]
    paths = [r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()]
    logits = image_logits(paths, "emoji-twemoji", ctx.show_progress_bar)
    s = emoji_splits(data.names)
    T, In, It = data.texts[CAPTION], data.images["noto"], data.images["twemoji"]
    out = {}
    for level, truth in (("emoji groups", data.groups), ("emoji subgroups", data.subgroups)):
        def task(anchors, inputs, name):
            inputs = np.array([i for i in inputs if data.groups[i] != "None"])
            labels = sorted({str(x).replace("-", " ") for x in truth[inputs]})
            y = np.array([labels.index(str(truth[i]).replace("-", " ")) for i in inputs])
            spec = recipe(AnchorShape(len(anchors), "image"), None, BuildOptions()).spec(n_bank=0 if bt is None else len(bt))
            return ClassTask(name, labels, list(TEMPLATES_CLASSIFY), Side(spec, In[anchors], bi), Side(spec, T[anchors], bt),
                             It[inputs], y, logits[inputs], It)
        out[level] = ([task(a, h, f"{level} fold {i}") for i, (a, h) in enumerate(s["folds"])],
                      task(s["anchor"], s["query"], level))
    return out


TEMPLATES_CLASSIFY = ("an emoji of {}", "an emoji from the category {}")


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

    bank = background_bank("emoji", ctx.image, ctx.text, ctx.show_progress_bar)
    out = emoji_groups(report, data, ctx.text, more, bank)
    out.update(signals_section(report, ctx, bank))
    report.data("summary.json", out)
    return out


def signals_section(report: Report, ctx, bank) -> Dict:
    """The one-style default with every signal the image network's head adds, calibrated."""
    from retrieval.api.head_signals import ClassHead
    from retrieval.evaluation.classification import report_signals

    report.text("""
### Every signal, calibrated

The one-style default (with its bank) as `retrieval classify` runs it on files: the ASIF signal fused
with the image network's own head (the WordNet tree; the label bridge, weight 0), each standardised
over the labels, made probabilities at the temperature chosen on validation folds
(results/experiments/classify_signals.md; retrieval/api/classify.py). ECE: expected calibration error
of the top answer's probability (15 bins). Ties counted fairly.""")
    head = ClassHead.of(ctx.image, ctx.text)
    return {f"signals {level}": report_signals(report, f"{level}: the query concepts' Twemoji drawings", test,
                                               ctx.text, head)
            for level, (_, test) in class_tasks(ctx, bank).items()}


SUITE = Suite("emoji-groups", "zero-shot classification of emoji into Unicode groups and subgroups", run)
