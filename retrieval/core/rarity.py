"""Anchor rarity: the anchors that every corpus item counts among its nearest say little about any one.

With anchors of another domain than the corpus (emoji pairs for a corpus of drawings), a few anchors
are near every item, for the domain's sake rather than the content's, and they dominate the relative
vectors, so that the items look alike. Text retrieval met the same thing in words that occur in every
document, and weighs terms by their inverse document frequency; here the "documents" are the corpus
items' relative vectors and the "terms" their kept anchors. :class:`Rarity` is the step that applies
such weights, after the relativiser (a *post* step: it reweights relative vectors); its weights are
parameters, learnt from the corpus by :func:`rarity_weights` at build time and stored in the spec, so
a collection refits the same step from its manifest. Measured in results/experiments/cross_domain.md
and the ``crossdomain`` suite.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import scipy.sparse as sp

from retrieval.core.normalise import l2_normalise
from retrieval.core.step import Step
from retrieval.errors import CollectionFormatError, InputError


def rarity_weights(rel, power: float) -> np.ndarray:
    """Per anchor (column of ``rel``, relative vectors of corpus items), its smoothed inverse document
    frequency ``1 + log((n + 1) / (df + 1))`` to the ``power``: 1 for an anchor kept by every item, more
    for rarer ones. ``df`` counts the items that keep the anchor (a non-zero entry)."""
    if not np.isfinite(power) or power < 0:
        raise InputError(f"expected a rarity power >= 0, got {power!r}")
    n = rel.shape[0]
    if n == 0:
        raise InputError("expected relative vectors of at least one corpus item to weigh the anchors by, got none")
    df = np.asarray((rel != 0).sum(0)).ravel() if sp.issparse(rel) else (np.asarray(rel) != 0).sum(0)
    return (1.0 + np.log((n + 1.0) / (df + 1.0))) ** float(power)


class Rarity(Step):
    """Scale each anchor's column by its weight, then rows to unit length again."""

    name = "rarity"
    PARAMS = ("weights",)
    post = True  # runs on the relativiser's output (retrieval/core/step.py: Chain)

    def __init__(self, weights):
        w = np.asarray(weights, np.float64)
        if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise CollectionFormatError(f"expected rarity weights as a non-empty list of finite numbers > 0, "
                                        f"got {np.shape(weights)} values")
        self.weights_ = w.astype(np.float32)

    @property
    def weights(self):
        return [round(float(x), 6) for x in self.weights_]

    def fit_relative(self, n_anchors: int) -> "Rarity":
        if n_anchors != len(self.weights_):
            raise InputError(f"expected one rarity weight per anchor ({n_anchors}), got {len(self.weights_)}")
        return self

    def transform(self, rel):
        if sp.issparse(rel):
            scaled = sp.csr_matrix(rel.multiply(self.weights_[None, :]), dtype=np.float32)
            norms = np.sqrt(np.asarray(scaled.multiply(scaled).sum(1), np.float64)).ravel()
            return sp.csr_matrix(sp.diags((1.0 / np.maximum(norms, 1e-12)).astype(np.float32)) @ scaled)
        return l2_normalise(np.asarray(rel, np.float32) * self.weights_[None, :])

    def summary(self) -> Dict:
        return {"rarity": True}
