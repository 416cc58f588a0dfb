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
from typing import Dict, List, Optional, Union

import numpy as np

from retrieval.build import background as bg
from retrieval.build.anchors import AnchorSet
from retrieval.build.options import (
    DEFAULT_K,
    DEFAULT_P,
    DEFAULT_VIEWS_K,
    VIEWS_K_P_BY_ENCODER,
    BuildOptions,
    default_k_p,
    default_rarity,
    default_whiten,
)
from retrieval.core.centre import Centre, Unit
from retrieval.core.projector import RelativeProjector, Spec, blocks_spec
from retrieval.core.relativisers import AsifTopK, CosineRelative
from retrieval.core.style import Restyle
from retrieval.core.whiten import ShrinkageWhiten
from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT as DEFAULT_VIEWS_LABEL_WEIGHT
from retrieval.encoders.labels import DEFAULT_WEIGHT as DEFAULT_LABEL_WEIGHT
from retrieval.errors import InputError


@dataclass(frozen=True)
class AnchorShape:
    """What the recipe reads of an anchor set: its size, modality and whether it has views. The
    evaluation suites, which hold vectors rather than files, describe their anchors with it, so that
    they take their defaults from the same function as a build."""

    n_anchors: int
    modality: str = "image"
    has_views: bool = False
    source: str = "the suite's anchors"

    def __len__(self) -> int:
        return self.n_anchors


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
    bank_k: int                # the bank block's k before it is capped at the bank's size
    rarity: float = 0.0        # the items' anchors weighed by their rarity in the corpus, this power (0: off)

    def chain(self, *, style: bool, k: Optional[int] = None, p: Optional[float] = None,
              whiten: Optional[float] = None) -> List[Dict]:
        """The steps of one projector, one line per idea (retrieval/core/step.py). This is what a build
        makes; the flat parameters of format 6 and before are read by their own, fixed, translation
        (retrieval/core/projector.py: spec_from_params), which must stay as it is for old collections."""
        whiten = self.whiten if whiten is None else whiten
        centred = self.center or bool(whiten)  # whitening centres, whatever "center" says
        steps = [Restyle() if style else Unit()]
        steps += [Centre()] if centred else []
        steps += [ShrinkageWhiten(whiten)] if whiten else []
        steps += [Unit()] if centred else []
        steps += [AsifTopK(k or self.k, self.p if p is None else p) if self.kind == "asif" else CosineRelative()]
        return [s.to_spec() for s in steps]

    def spec(self, *, style: bool = False, n_bank: int = 0) -> Spec:
        """One modality's projector: its chain, and the background bank's beside it when there is one."""
        main = self.chain(style=style)
        if not n_bank:
            return main
        return blocks_spec(main, self.chain(style=style, k=min(n_bank, self.bank_k)), self.background_weight)

    def specs(self, modality: str, *, style: bool = False, n_bank: int = 0) -> Dict[str, Spec]:
        """The items' modality's projector (with the style normaliser, when the anchors have views) and text's."""
        return {modality: self.spec(style=style, n_bank=n_bank), "text": self.spec(n_bank=n_bank)}

    def pivot_spec(self, n_anchors: int) -> List[Dict]:
        """A pivot set's projector: the pivot k (capped at the set) and p, never whitened, no bank."""
        return self.chain(style=False, k=min(self.pivot_k, n_anchors), p=self.pivot_p, whiten=0.0)


def check_label_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
        raise InputError(f"expected a label weight >= 0, got {weight!r}")
    return float(weight)


def label_weight(anchor_set: AnchorSet, o: BuildOptions) -> float:
    """The label bridge's weight: as given, else the default for anchors with or without views."""
    if o.label_weight is not None:
        return check_label_weight(o.label_weight)
    return DEFAULT_VIEWS_LABEL_WEIGHT if anchor_set.has_views else DEFAULT_LABEL_WEIGHT


def recipe(anchor_set: Union[AnchorSet, AnchorShape], media_encoder: Optional[str], o: BuildOptions) -> Recipe:
    """The settings a build with options ``o`` makes from ``anchor_set`` (before its views are merged)
    and the spec of the encoder of its media side."""
    o.check_budget(anchor_set)
    k, p = default_k_p(anchor_set, o.k, o.p, media_encoder, o.n_anchors)
    whiten = default_whiten(anchor_set, o.whiten)
    RelativeProjector(k=k, p=p, kind=o.kind, center=o.center, whiten=whiten).check_params(
        o.n_anchors or anchor_set.n_anchors)
    # the bank's k: the k asked for (or the default), capped at the bank later, not at the user's anchors
    asked = (VIEWS_K_P_BY_ENCODER.get(media_encoder, (DEFAULT_VIEWS_K, None))[0] if anchor_set.has_views
             else DEFAULT_K)
    return Recipe(k=k, p=p, kind=o.kind, center=o.center, whiten=whiten, bank_k=o.k if o.k is not None else max(k, asked),
                  pivot_k=DEFAULT_K if o.k is None else o.k, pivot_p=DEFAULT_P if o.p is None else o.p,
                  label_weight=label_weight(anchor_set, o),
                  background_weight=bg.check_weight(bg.DEFAULT_WEIGHT if o.background_weight is None
                                                    else o.background_weight),
                  rarity=default_rarity(o.anchor_rarity))
