"""Unit rows and centring: the first steps of every projector chain (retrieval/core/step.py).

Centring on the anchors' mean: embeddings of one encoder share a large common direction (EfficientNet
features are all positive), which makes every cosine high and alike; removing the anchors' mean leaves
the directions in which things differ. Inputs of another domain than the anchors can be centred on
their own domain's mean instead (:meth:`Centre.centred_on`, classification's corpus centring).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.core.step import Step
from retrieval.errors import InputError


class Unit(Step):
    """Rows scaled to unit length."""

    name = "unit"
    row_independent = True

    def transform(self, x: np.ndarray) -> np.ndarray:
        return l2_normalise(x)


class Centre(Step):
    """Subtract the mean of the rows it was fitted on (float32, as the anchors are)."""

    name = "centre"
    row_independent = True
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


def label_balanced_mean(mean_of: Callable[[np.ndarray], np.ndarray], predict: Callable[[np.ndarray], np.ndarray],
                        corpus: np.ndarray, start: np.ndarray, rounds: int) -> np.ndarray:
    """The mean of a corpus with each predicted label weighing alike: ``predict(mean)`` labels the
    corpus's rows when the inputs are centred on ``mean``, ``mean_of(rows)`` is the mean the centring
    takes of some rows. From ``start``, each round centres, predicts, and takes the mean of the labels'
    own means; it stops early when no prediction changes.

    Why: a corpus that is mostly one label has its mean near that label, and centring on it pushes
    its inputs away from the label most of them are (Scratch's costumes, half of them people); the
    mean of the labels' means keeps what the corpus shares (its domain) without its majority."""
    mean, before = start, None
    for _ in range(rounds):
        pred = predict(mean)
        if before is not None and np.array_equal(pred, before):
            break
        mean = np.mean([mean_of(corpus[pred == c]) for c in np.unique(pred)], axis=0)
        before = pred
    return mean
