"""Unit rows: the one L2 normalisation every layer uses (encoders, relative vectors, bridges, metrics)."""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def l2_normalise(x, eps: float = EPS, dtype=np.float32) -> np.ndarray:
    """Rows scaled to unit L2 norm. A row whose norm is below ``eps`` (an all-zero row) is divided by
    ``eps`` instead, so it stays zero rather than becoming NaN. ``dtype``: the result's type
    (``None`` keeps the input's floating type, e.g. float64 where ties are broken)."""
    x = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.asarray(eps, x.dtype))
