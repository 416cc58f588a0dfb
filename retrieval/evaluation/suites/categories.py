"""categories: zero-shot classification of Tux Paint stamps, Scratch costumes and Open Clip Art by
their packages' category folders, with the engine's own emoji anchors (another domain)."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from retrieval.core.folds import concept_split
from retrieval.evaluation.classification import ClassTask, report_signals
from retrieval.evaluation.harness import Suite
from retrieval.evaluation.report import Report

SOURCES = ("tuxpaint", "scratch", "openclipart")
ANCHOR_TEMPLATE = "an emoji of {}"  # the emoji pack's captions (retrieval/datasets/packs.py)
# A collection classified with the default templates, as `retrieval classify` does without --template.


def emoji_anchors(ctx) -> Tuple[np.ndarray, np.ndarray]:
    """(caption vectors, image vectors) of the emoji pack: every Noto emoji with "an emoji of NAME"."""
    from retrieval.evaluation.data import load_emoji

    data = load_emoji(ctx.image, ctx.text, [ANCHOR_TEMPLATE], ctx.show_progress_bar)
    return data.texts[ANCHOR_TEMPLATE], data.images["noto"]


def category_tasks(source: str, ctx, anchors, templates=None) -> Tuple[ClassTask, ClassTask]:
    """(validation, test) tasks of one source: its categorised pictures split in two by a stable hash
    of what each shows (its concept), so no concept is on both sides; the corpus is all of them."""
    from retrieval.api.classify import DEFAULT_TEMPLATES, Side
    from retrieval.build.anchors import AnchorSet, encode_anchors
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.datasets import pictures
    from retrieval.evaluation.data import data_dir
    from retrieval.evaluation.suites.pictures import image_logits

    pics = pictures.rendered(pictures.categorised(source), data_dir("pictures") / source,
                             show_progress_bar=ctx.show_progress_bar)
    paths = [p.path for p in pics]
    vecs = encode_anchors(AnchorSet(paths, [p.caption for p in pics], source=f"{source}-categorised"), ctx.image,
                          "image", batch_size=64, show_progress_bar=ctx.show_progress_bar)
    logits = image_logits(paths, f"{source}-categorised", ctx.show_progress_bar)
    labels = sorted({p.category for p in pics})
    truth = np.array([labels.index(p.category) for p in pics])
    spec = recipe(AnchorShape(len(anchors[1]), "image"), None, BuildOptions()).spec()  # what a build makes
    task = ClassTask(source, labels, list(templates or DEFAULT_TEMPLATES), Side(spec, anchors[1]),
                     Side(spec, anchors[0]), vecs, truth, logits, vecs)
    val, test, _ = concept_split([p.concept for p in pics], 2, source + ":")
    return task.subset(val, f"{source} (validation)"), task.subset(test, source)


def run(report: Report, ctx) -> Dict:
    from retrieval.api.head_signals import ClassHead

    report.text("""
Zero-shot classification of pictures into their Debian packages' category folders: Tux Paint's
stamps (`tuxpaint-stamps-default`), Scratch 1.4's costumes (`scratch`) and Open Clip Art
(`openclipart-svg`), the categories of each in `retrieval/datasets/pictures.py` (`CATEGORIES`,
chosen by name). The anchors are the engine's own emoji pack (every Noto emoji, "an emoji of
NAME"): another domain, as for a user with no pairs of their own. Labels are the folder names,
prompts the default templates (`retrieval classify` without `--template`). Each source's pictures
are split in two by a stable hash of what they show: the validation half chose the signals' weights
and temperatures (with the other suites' validation folds: results/experiments/classify_signals.md),
the test half is reported here. A collection of a source's pictures is the corpus its inputs are
centred on. ECE: expected calibration error of the top answer's probability (15 bins).""")
    anchors = emoji_anchors(ctx)
    head = ClassHead.of(ctx.image, ctx.text)
    from retrieval.errors import InputError

    out = {}
    for source in SOURCES:
        try:
            _, test = category_tasks(source, ctx, anchors)
        except InputError as exc:  # a picture source not installed here: said, not hidden
            report.text(f"{source}: left out ({exc}).")
            continue
        out[source] = report_signals(report, f"{source}: {len(test.labels)} categories, {len(test.truth)} test "
                                             f"pictures", test, ctx.text, head)
    report.data("summary.json", out)
    return out


SUITE = Suite("categories", "zero-shot classification of Tux Paint, Scratch and Open Clip Art pictures by category "
              "with emoji anchors", run)
