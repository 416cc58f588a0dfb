"""The recipe: every setting a build settles from its anchor set, its encoder and the options given,
decided in one place. ``build``, ``reanchor`` / ``reencode`` and the distributed build all take
their settings from :func:`recipe`, so "None means the default for these anchors" is answered once
(where each default was measured: :mod:`retrieval.build.options`, :mod:`retrieval.encoders.labels`,
:mod:`retrieval.build.background`).

It is pure but for one warning (fewer anchors than is useful) and raises, before anything is
encoded, on settings that cannot work with these anchors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from retrieval.build import background as bg
from retrieval.build.anchors import AnchorSet
from retrieval.build.options import DEFAULT_K, DEFAULT_P, BuildOptions, default_k_p, default_whiten
from retrieval.core.relative import RelativeProjector
from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT as DEFAULT_VIEWS_LABEL_WEIGHT
from retrieval.encoders.labels import DEFAULT_WEIGHT as DEFAULT_LABEL_WEIGHT
from retrieval.errors import InputError


@dataclass(frozen=True)
class Recipe:
    """The settled settings of one build.

    >>> r = recipe(anchor_set, "efficientnet-lite0", BuildOptions())   # doctest: +SKIP
    >>> r.k, r.p, r.whiten                                              # doctest: +SKIP
    (256, 2.0, 9.0)
    """

    k: int                     # anchors kept per relative vector (at most the anchors kept)
    p: float                   # power on the kept similarities
    kind: str                  # "asif" or "cosine"
    center: bool               # centre on the anchors' mean before the cosine
    whiten: float              # shrinkage-whitening strength, 0 = off
    pivot_k: int               # pivot sets' k and p: the plain defaults unless k / p were given
    pivot_p: float
    label_weight: float        # weight of the label bridge's cosine
    background_weight: float   # weight of the background bank's score

    def projector(self) -> Dict:
        """The manifest's ``projector`` parameters ("whiten" only when on, as every version wrote them)."""
        return {"kind": self.kind, "k": self.k, "p": self.p, "center": self.center,
                **({"whiten": self.whiten} if self.whiten else {})}


def check_label_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
        raise InputError(f"expected a label weight >= 0, got {weight!r}")
    return float(weight)


def label_weight(anchor_set: AnchorSet, o: BuildOptions) -> float:
    """The label bridge's weight: as given, else the default for anchors with or without views."""
    if o.label_weight is not None:
        return check_label_weight(o.label_weight)
    return DEFAULT_VIEWS_LABEL_WEIGHT if anchor_set.has_views else DEFAULT_LABEL_WEIGHT


def recipe(anchor_set: AnchorSet, media_encoder: Optional[str], o: BuildOptions) -> Recipe:
    """The settings a build with options ``o`` makes from ``anchor_set`` (before its views are merged)
    and the spec of the encoder of its media side."""
    o.check_budget(anchor_set)
    k, p = default_k_p(anchor_set, o.k, o.p, media_encoder, o.n_anchors)
    whiten = default_whiten(anchor_set, o.whiten)
    RelativeProjector(k=k, p=p, kind=o.kind, center=o.center, whiten=whiten).check_params(
        o.n_anchors or anchor_set.n_anchors)
    return Recipe(k=k, p=p, kind=o.kind, center=o.center, whiten=whiten,
                  pivot_k=DEFAULT_K if o.k is None else o.k, pivot_p=DEFAULT_P if o.p is None else o.p,
                  label_weight=label_weight(anchor_set, o),
                  background_weight=bg.check_weight(bg.DEFAULT_WEIGHT if o.background_weight is None
                                                    else o.background_weight))
