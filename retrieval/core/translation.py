"""Direct translation between latent spaces, fitted on parallel anchors (Maiorca et al., 2023).

``Translator(method).fit(x_anchors, y_anchors).transform(x)`` maps vectors of space X into space Y.
Both sides are standard-scaled with their anchors' statistics; the narrower side is (implicitly)
zero-padded so that an orthogonal map exists between spaces of different widths.

* ``orthogonal``: Procrustes, ``R = U V^T`` from the SVD of ``X^T Y``; preserves angles.
* ``linear``: least squares ``X W ~ Y``.
* ``affine``: least squares with a bias column.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.errors import InputError

METHODS = ("orthogonal", "linear", "affine")


class Translator:
    """Map space X to space Y (scikit-learn style: parameters in __init__, learned state with a _ suffix).

    >>> rng = np.random.default_rng(0); x = rng.normal(size=(50, 4))
    >>> q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    >>> t = Translator("orthogonal", standardize=False).fit(x, x @ q)
    >>> bool(np.allclose(t.transform(x), x @ q, atol=1e-6))
    True
    """

    def __init__(self, method: str = "orthogonal", standardize: bool = True):
        self.method, self.standardize = method, standardize

    def fit(self, x: np.ndarray, y: np.ndarray) -> "Translator":
        if self.method not in METHODS:
            raise InputError(f"expected a translation method in {METHODS}, got {self.method!r}")
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise InputError(f"expected two 2-D arrays of parallel anchors with the same number (>= 2) of rows, "
                             f"got shapes {x.shape} and {y.shape}")
        self.dim_in_, self.dim_out_ = x.shape[1], y.shape[1]
        if self.standardize:
            self.x_mean_, self.x_std_ = x.mean(0), x.std(0) + 1e-8
            self.y_mean_, self.y_std_ = y.mean(0), y.std(0) + 1e-8
        else:
            self.x_mean_, self.x_std_ = np.zeros(x.shape[1]), np.ones(x.shape[1])
            self.y_mean_, self.y_std_ = np.zeros(y.shape[1]), np.ones(y.shape[1])
        xs, ys = self._scale_x(x), (y - self.y_mean_) / self.y_std_
        if self.method == "orthogonal":
            # Procrustes between the two sides zero-padded to one width. Padded inputs and cut outputs
            # only ever meet the dim_in x dim_out block of that square map, and (for full-rank anchors)
            # the block is U V^T of the thin SVD of the unpadded cross-covariance: a 2960 x 384 SVD
            # instead of a 2960 x 2960 one, and a 7.7x smaller map to store.
            u, sv, vt = np.linalg.svd(xs.T @ ys, full_matrices=False)
            # With fewer anchors than dimensions the cross-covariance is rank-deficient and the
            # rotation of its null directions is arbitrary (LAPACK's choice); drop them instead, so
            # that directions the anchors never constrain map to zero, the same on every machine.
            r = int((sv > sv[0] * max(xs.shape[1], ys.shape[1]) * np.finfo(np.float64).eps).sum()) if len(sv) else 0
            self.weight_ = u[:, :r] @ vt[:r]
        else:
            a = np.hstack([xs, np.ones((len(xs), 1))]) if self.method == "affine" else xs
            self.weight_ = np.linalg.lstsq(a, ys, rcond=None)[0]
        return self

    def _scale_x(self, x):
        return (x - self.x_mean_) / self.x_std_

    @property
    def width_(self) -> int:
        return max(self.dim_in_, self.dim_out_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Translate into Y's standard-scaled coordinates, then undo Y's scaling."""
        if not hasattr(self, "weight_"):
            raise InputError("this Translator is not fitted yet; call fit(x_anchors, y_anchors) first")
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim_in_:
            raise InputError(f"expected vectors of width {self.dim_in_}, got shape {x.shape}")
        xs = self._scale_x(x)
        if self.method == "affine":
            xs = np.hstack([xs, np.ones((len(xs), 1))])
        y = (xs @ self.weight_)[:, : self.dim_out_]
        return (y * self.y_std_ + self.y_mean_).astype(np.float32)

    def scale_target(self, y: np.ndarray) -> np.ndarray:
        """Unit rows of target-space vectors in the anchors' standard-scaled coordinates: where
        translated queries are compared with the target's items (cosine)."""
        ys = (np.asarray(y, np.float64) - self.y_mean_) / self.y_std_
        return l2_normalise(ys)

    def transform_scaled(self, x: np.ndarray) -> np.ndarray:
        """Translate, then express in the same coordinates as :meth:`scale_target`."""
        return self.scale_target(self.transform(x))

    def get_params(self) -> Dict:
        return {"method": self.method, "standardize": self.standardize}
