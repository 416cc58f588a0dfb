"""Unit rows and centring: the first steps of every projector chain (retrieval/core/step.py).

Centring on the anchors' mean: embeddings of one encoder share a large common direction (EfficientNet
features are all positive), which makes every cosine high and alike; removing the anchors' mean leaves
the directions in which things differ. Inputs of another domain than the anchors can be centred on
their own domain's mean instead (:meth:`Centre.centred_on`, classification's corpus centring).
"""

from __future__ import annotations

import copy

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.core.step import Step
from retrieval.errors import InputError


class Unit(Step):
    """Rows scaled to unit length."""

    name = "unit"

    def transform(self, x: np.ndarray) -> np.ndarray:
        return l2_normalise(x)


class Centre(Step):
    """Subtract the mean of the rows it was fitted on (float32, as the anchors are)."""

    name = "centre"
    centres = True  # the step Chain.centred_on replaces the mean of

    def fit(self, x: np.ndarray) -> "Centre":
        self.mean_ = np.asarray(x, np.float32).mean(0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x - self.mean_

    def centred_on(self, mean: np.ndarray, dim: int) -> "Centre":
        mean = np.asarray(mean, np.float32)
        if mean.shape != (dim,) or not np.all(np.isfinite(mean)):
            raise InputError(f"expected a finite mean vector of width {dim} (the anchors' width), "
                             f"got shape {mean.shape}")
        out = copy.copy(self)
        out.mean_ = mean
        return out

    def summary(self) -> dict:
        return {"center": True}
