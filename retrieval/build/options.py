"""Every setting of a build, declared once: :class:`BuildOptions` is what ``retrieval build``
parses into, what :func:`retrieval.build.builder.build_collection` and
:func:`retrieval.distributed.build_sharded` take, and where the defaults live (with the
measurements that chose them)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from retrieval.build.anchors import AnchorSet
from retrieval.encoders import DEFAULT_ENCODERS
from retrieval.errors import InputError, UnknownNameError

log = logging.getLogger(__name__)
# Below this many anchor pairs a collection still builds, with a warning that says why (FEW_ANCHORS_WHY:
# quality grows steeply with the anchors; Open Clip Art likewise, 0.160 with 25 pairs, 0.490 with 1,210).
FEW_ANCHORS = 100
FEW_ANCHORS_WHY = ("text -> image R@10 on Tux Paint: 0.370 with 25 random pairs, 0.594 with 100, 0.767 with all "
                   "302; results/anchors, `retrieval eval --suite anchors`")

# Chosen by 4-fold validation on the anchor concepts of the emoji-xstyle suite, averaging the seen and
# unseen regimes (never the test queries); see results/emoji-xstyle/README.md. With fewer anchors than
# DEFAULT_K, an unspecified k becomes the number of anchors.
CAPTIONS_FROM = (None, "names")  # further caption sources a build may be asked to read


def check_captions_from(value) -> None:
    if value not in CAPTIONS_FROM:
        raise UnknownNameError(f"unknown caption source {value!r}; known: {', '.join(map(str, CAPTIONS_FROM))}")
DEFAULT_K = 256
DEFAULT_P = 4.0  # sound collections and pivot sets (the sounds suite measured it)
DEFAULT_CENTER = True
# Image collections with one picture per caption: chosen by the best mean validation R@10 over every
# single-view suite (Tux Paint, Open Clip Art, Scratch costumes, emoji with Noto anchors), together
# with the label weight (retrieval/labels.py): scripts/bridges_experiment.py, results/experiments/bridges.
DEFAULT_IMAGE_P = 2.0
# Shrinkage whitening of both sides before relativising (retrieval/core/whiten.py), for image anchor
# sets with one picture per caption: lambda chosen by the best mean validation R@10 over the four
# picture suites, k, p and the label weight held as above (scripts/whitening_experiment.py,
# results/experiments/whitening; why not a joint choice: docs/research/README.md). Sets with views keep their WCCN style normaliser alone (whitening
# on top measured neutral on the emoji-xstyle folds); sound sets are not whitened (see the sounds suite).
DEFAULT_WHITEN = 9.0
# Anchor tables that draw each concept several ways (a style normaliser is learned, retrieval/style.py)
# were chosen for separately, by the same validation: sparser, flatter vectors did best there.
DEFAULT_VIEWS_K = 32
DEFAULT_VIEWS_P = 2.0
# Encoders whose views defaults the same validation chose differently. None at present: with the
# demo's three and five drawing styles as views, validation chose k=32 p=2 for the opt-in pair of
# networks too (it chose k=64 with two styles); the emoji-xstyle suite says "Stale" if that changes.
VIEWS_K_P_BY_ENCODER: Dict[str, Tuple[int, float]] = {}
# Anchor rarity (retrieval/core/rarity.py) is off unless asked for: with anchors of another domain it gained
# +0.011 to +0.016 R@10 on Open Clip Art and stayed within +-0.010 elsewhere (the crossdomain suite), too
# little, and measured on too few suites, to change every build (docs/research/README.md).
DEFAULT_RARITY = 0.0


@dataclass(frozen=True)
class BuildOptions:
    """How to build a collection. ``None`` means "the default for these anchors" (see
    :func:`default_k_p` and :mod:`retrieval.encoders.labels`).

    >>> BuildOptions(k=64).replace(p=8.0)   # doctest: +ELLIPSIS
    BuildOptions(image_encoder=..., k=64, p=8.0, ...)
    """

    image_encoder: str = DEFAULT_ENCODERS["image"]
    text_encoder: str = DEFAULT_ENCODERS["text"]
    audio_encoder: str = DEFAULT_ENCODERS["audio"]
    k: Optional[int] = None                # anchors kept per relative vector
    p: Optional[float] = None              # power applied to the kept similarities
    kind: str = "asif"                     # "asif" (sparse top-k) or "cosine" (dense)
    center: bool = DEFAULT_CENTER          # centre on the anchors' mean before the cosine
    whiten: Optional[float] = None         # shrinkage-whitening strength (0: off; None: the default for these anchors)
    background: Optional[str] = None       # background anchor bank: "emoji", "none" or a table (None: the default)
    background_weight: Optional[float] = None  # weight of the bank's score (None: background.DEFAULT_WEIGHT)
    index: str = "exact"                   # the relative vectors' index: see parse_index_spec
    dense_index: Optional[str] = None      # FAISS for the dense routes: "auto" or a factory string
    max_memory: Optional[str] = None       # budget for dense_index="auto", e.g. "4G"
    max_query_ms: Optional[float] = None   # latency budget for dense_index="auto"
    dense_rerank: Optional[int] = None     # re-score R x the candidates of an explicit factory exactly
    labels: Optional[bool] = None          # store label vectors (default: when the image encoder has a head)
    label_weight: Optional[float] = None   # weight of the label bridge in the relative+labels route
    pivots: Sequence = field(default=())   # further anchor sets linking another modality with text
    n_anchors: Optional[int] = None        # keep this many anchor pairs of the set given (the anchor budget)
    select: str = "random"                 # how: random, fps, kmeans or coverage (retrieval/core/selection.py)
    tune: bool = False                     # choose k, p, centring and whitening on the anchors' own folds (build/tuning.py)
    self_anchors: Optional[bool] = None    # captioned corpus items join the anchors (None: for images; build/self_anchors.py)
    anchor_rarity: Optional[float] = None  # weigh anchors by their rarity in the corpus, this power (0: off; build/rarity.py)
    embedded_captions: bool = True         # an image without a caption takes its file's XMP / IPTC / EXIF one (media/metadata.py)
    captions_from: Optional[str] = None    # "names": a row still without a caption takes its file name's words (media/names.py)
    overwrite: bool = False                # replace an existing collection (atomically)
    cache_dir: Optional[str] = None        # anchor encodings cache ('' disables; None: the default place)
    batch_size: int = 32
    device: str = "cpu"
    show_progress_bar: Optional[bool] = None

    def replace(self, **changes) -> "BuildOptions":
        """A copy with ``changes``; an unknown name is refused with the list of known ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UnknownNameError(f"unknown build option(s) {', '.join(map(repr, unknown))}; known: "
                                   f"{', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def of(cls, options: Optional["BuildOptions"] = None, **changes) -> "BuildOptions":
        """``options`` (or the defaults) with keyword ``changes``: what the build functions accept, so
        that ``build_collection(c, a, out, k=64)`` and ``build_collection(c, a, out, BuildOptions(k=64))``
        mean the same."""
        if options is not None and not isinstance(options, cls):
            raise InputError(f"expected BuildOptions (or keyword options), got {type(options).__name__}")
        return (options or cls()).replace(**changes)

    @classmethod
    def from_namespace(cls, ns) -> "BuildOptions":
        """From parsed ``retrieval build`` arguments: each field is the option of the same name
        (``--image-encoder`` is ``image_encoder``); ``--progress`` and ``--pivot-anchors`` are the two
        spelled otherwise."""
        given = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
        given["show_progress_bar"] = getattr(ns, "progress", None)
        given["pivots"] = tuple(getattr(ns, "pivot_anchors", None) or ())
        return cls(**given)

    def check_budget(self, anchor_set: AnchorSet) -> None:
        """An anchor budget is checked before anything is encoded; a small one is warned of."""
        from retrieval.core.selection import SELECTORS

        if self.select not in SELECTORS:
            raise UnknownNameError(f"unknown anchor selector {self.select!r}; known: {', '.join(SELECTORS)}")
        warn_if_few(self.n_anchors or anchor_set.n_anchors, anchor_set.source)
        if self.n_anchors is None:
            return
        if not isinstance(self.n_anchors, int) or not 1 <= self.n_anchors <= len(anchor_set):
            raise InputError(f"expected --n-anchors from 1 to the {len(anchor_set)} pairs of "
                             f"{anchor_set.source or 'the anchor set'}, got {self.n_anchors!r}")
        if anchor_set.has_views:
            raise InputError("expected an anchor set without views (no repeated 'concept') for --n-anchors, got one "
                             "with views: choosing among concepts drawn several ways is not supported yet")

    def check_sharded(self) -> None:
        """What a sharded (Ray) build does not support yet is refused before anything starts."""
        unsupported = [name for name, bad in (("pivots", bool(self.pivots)), ("dense_index", bool(self.dense_index)),
                                              ("background", self.background not in (None, "none")),
                                              ("kind", self.kind != "asif"), ("labels", self.labels is True),
                                              ("n_anchors", self.n_anchors is not None), ("tune", self.tune),
                                              ("anchor_rarity", bool(self.anchor_rarity)))
                       if bad]
        if unsupported:
            raise InputError(f"expected a plain ASIF build for a sharded collection, got {', '.join(unsupported)} "
                             f"(--pivot-anchors, --dense-index, --kind cosine, --labels, --background, --n-anchors, --tune and "
                             f"--anchor-rarity are not supported with --ray yet: each shard would weigh the anchors by "
                             f"its own items); build without --ray for those")


def default_k_p(anchor_set: AnchorSet, k: Optional[int], p: Optional[float],
                encoder: Optional[str] = None, n_anchors: Optional[int] = None) -> Tuple[int, float]:
    """k and p where not given: the views defaults for a set with views (those validated for
    ``encoder``, the anchors' encoder spec, where they differ), else the single-view ones of its
    modality (images: DEFAULT_IMAGE_P, sounds: DEFAULT_P); k at most the number of anchors
    (``n_anchors`` when a budget keeps fewer than the set has)."""
    views_k, views_p = VIEWS_K_P_BY_ENCODER.get(encoder, (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P))
    if k is None:
        k = min(views_k if anchor_set.has_views else DEFAULT_K, n_anchors or anchor_set.n_anchors)
    if p is None:
        p = views_p if anchor_set.has_views else DEFAULT_IMAGE_P if anchor_set.modality == "image" else DEFAULT_P
    return k, p


def default_whiten(anchor_set: AnchorSet, whiten: Optional[float]) -> float:
    """The whitening strength where not given: DEFAULT_WHITEN for image anchor sets without views,
    else 0 (off). A given value is checked (>= 0, finite)."""
    from retrieval.core.whiten import check_lambda

    if whiten is not None:
        return check_lambda(whiten)
    return DEFAULT_WHITEN if anchor_set.modality == "image" and not anchor_set.has_views else 0.0


def default_rarity(power: Optional[float]) -> float:
    """The anchor rarity power: as given (checked: finite, >= 0), else DEFAULT_RARITY."""
    if power is None:
        return DEFAULT_RARITY
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not np.isfinite(power) or power < 0:
        raise InputError(f"expected an anchor rarity power >= 0 (0: off, 1: the measured setting), got {power!r}")
    return float(power)


def parse_index_spec(spec: str) -> Dict:
    """``"exact"``, ``"inverted"`` (float16 weights) or ``"inverted:float32"``, ``"faiss"`` (Flat) or
    ``"faiss:FACTORY"`` such as ``"faiss:HNSW32"``."""
    name, _, arg = (spec or "").partition(":")
    if name == "exact" and not arg:
        return {"backend": "exact"}
    if name == "inverted" and arg in ("", "float16", "float32"):
        return {"backend": "inverted", "dtype": arg or "float16"}
    if name == "faiss":
        return {"backend": "faiss", "factory": arg or "Flat"}
    if name == "torch" and not arg:  # brute force with torch, on a CUDA GPU where the collection is opened with one
        return {"backend": "torch"}
    raise InputError(f"expected an index spec 'exact', 'inverted', 'inverted:float32', 'faiss', 'faiss:FACTORY' "
                     f"(e.g. faiss:HNSW32) or 'torch', got {spec!r}")


def warn_if_few(n: int, source: str = "") -> None:
    """Say so when a collection is built on fewer than FEW_ANCHORS anchors (it still is)."""
    if n < FEW_ANCHORS:
        log.warning("only %d anchor pair%s%s: relative vectors get sharper with more (%s). A few hundred pairs "
                    "or more are worth having", n, "" if n == 1 else "s", f" from {source}" if source else "",
                    FEW_ANCHORS_WHY)
