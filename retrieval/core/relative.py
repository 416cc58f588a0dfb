"""Relative representations: re-express vectors by their similarities to a set of anchors.

Two kinds (the ``kind`` parameter):

* ``"asif"`` (Norelli et al., 2023): cosine similarity to each anchor, keep the top ``k``, clamp
  negatives to 0, raise to the power ``p``, L2-normalise; a sparse CSR matrix with ``k`` non-zeros
  a row. Two vectors from different modalities become comparable when their anchors are parallel.
* ``"cosine"`` (Moschella et al., 2023): the full vector of cosine similarities, L2-normalised;
  dense. Used as an option and as the engine's secondary (tie-breaking) score.

The maths is here; the steps that use it are in retrieval/core/relativisers.py, the top-k engines in
retrieval/core/engines.py, and a projector (a chain of steps) in retrieval/core/projector.py.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from retrieval.core.normalise import l2_normalise
from retrieval.errors import InputError

KINDS = ("asif", "cosine")
# Rows per block: bounds the dense similarity block at BLOCK x n_anchors floats.
BLOCK = 2048


def asif_topk(sims: np.ndarray, k: int, p: float) -> sp.csr_matrix:
    """ASIF sparsification of a dense similarity block (rows = inputs, columns = anchors).

    Keeps each row's ``k`` largest entries, clamps them at 0, raises to ``p``, L2-normalises.
    Rows whose kept similarities are all <= 0 become all-zero rows (they match nothing).

    >>> asif_topk(np.array([[0.9, 0.1, 0.5]], np.float32), k=2, p=1.0).toarray().round(3)
    array([[0.874, 0.   , 0.486]], dtype=float32)
    """
    n, m = sims.shape
    if not 1 <= k <= m:
        raise InputError(f"expected 1 <= k <= number of anchors ({m}), got k={k}")
    if k == m:
        cols = np.broadcast_to(np.arange(m), (n, m))
    else:
        # Anchors tied with the k-th similarity are taken lowest index first, so a vector's
        # representation never depends on which other vectors share its batch (argpartition's
        # choice among ties does). np.nonzero yields exactly k sorted columns a row, as CSR wants.
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1:k]
        above, tied = sims > kth, sims == kth
        need = k - above.sum(1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= need))
        cols = np.nonzero(keep)[1].reshape(n, k)
    return asif_weights(cols, np.take_along_axis(sims, cols, axis=1), m, p)


def asif_weights(cols: np.ndarray, vals: np.ndarray, m: int, p: float) -> sp.csr_matrix:
    """CSR rows from each row's k kept anchors (``cols``, ascending) and their similarities:
    clamp at 0, raise to ``p``, L2-normalise."""
    n, k = cols.shape
    vals = np.array(vals, dtype=np.float32)
    np.maximum(vals, 0.0, out=vals)
    vals = vals ** np.float32(p)
    vals = l2_normalise(vals)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    out = sp.csr_matrix((vals.ravel(), cols.ravel().astype(np.int32), indptr), shape=(n, m))
    out.eliminate_zeros()
    return out


def cosine_relative(x: np.ndarray, anchors: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Dense relative representation: cosine similarities to the anchors, L2-normalised per row.

    ``dtype=np.float64`` is for tie-breaking: a float32 GEMM's result for one row depends on the
    other rows in the batch by ~1e-8, enough to reorder near-identical items; in float64 that noise
    is ~1e-16, below the tolerance ranking uses."""
    sims = np.asarray(x, dtype) @ np.asarray(anchors, dtype).T
    return l2_normalise(sims, dtype=None)


def unit_mean(x: np.ndarray, style=None, *, block: int = 65536) -> np.ndarray:
    """The float64 mean of ``x``'s rows made unit (after ``style``, a StyleNormaliser, if given), in
    blocks so that a memory-mapped corpus is never copied whole: what a projector's inputs are centred
    on by :meth:`retrieval.core.step.Chain.centred_on`."""
    x = np.asarray(x) if not hasattr(x, "shape") else x
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"expected at least one vector to take a mean of, got shape {tuple(x.shape)}")
    total = np.zeros(x.shape[1], np.float64)
    for i in range(0, len(x), block):
        part = np.asarray(x[i:i + block], np.float32)
        total += l2_normalise(style.transform(part) if style is not None else part).sum(0, dtype=np.float64)
    return total / len(x)
