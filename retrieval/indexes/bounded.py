"""Exact top-k of a dense query from a fraction of its postings: bounds on what the rest can add.

At a million items with k = 256 of 1,758 anchors, a query's postings number some 37 million and the
inverted index's dense path reads all of them (46-57 ms on one thread). Most of them cannot change the top k. The
query's terms (its non-zero anchors) are read in order of decreasing |weight|; after the first m,
each item's score is its partial sum ``s`` plus the rest ``r``, and two bounds hold for ``r``:

* Cauchy-Schwarz: ``|r| <= ||q_rest|| x ||w_rest||``, where ``||w_rest||^2`` is the item's squared
  norm (stored per item) less the squares of the weights read so far (summed beside ``s``);
* the anchors' weight ranges: ``r`` lies within the sum over the unread terms of
  ``[min(0, q lo, q hi), max(0, q lo, q hi)]`` (``lo``, ``hi`` stored per anchor). With non-negative
  weights and query this is ``r >= 0``: the partial sum is itself a lower bound.

The k-th best lower bound is at most the k-th best score, so only items whose upper bound reaches it
(less the tie tolerance) can be among the k or tie with the k-th. When they are few, they are
scored again from their own rows (a forward copy of the postings, row by item): the same products
added in the same order (ascending anchor) as the full path, so the scores are bit-for-bit the full
path's and so is the answer. When they are many, more terms are read; past half the terms the
caller falls back to the full path. Floating-point error is covered by a slack of a few units in
the last place per term on both bounds, so the candidates are never too few.

Measured: ``python scripts/bench_inverted_bounded.py DIR`` (results/bench/inverted-bounded.md): 2.48 x
at a million items, 2.21 x at 100,000, 1.68 x at 30,000 and 0.59 x at 5,000, hence ``MIN_ITEMS``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from retrieval.core.ranking import TIE_EPS

MIN_ITEMS = 20_000  # below, reading every posting is faster (module docstring)
STAGES = (16, 8, 4, 2)  # read 1/16 of the terms, then 1/8, 1/4 and 1/2 before giving up
ULP = 2.0 ** -23  # float32's relative precision, for the slack
BLOCK = 1 << 17  # items whose partial sums (1 MiB) are written at a time (1.2 x one pass at 1M items, exploratory)


def pays(n: int, dim: int, nnz: int) -> bool:
    """Whether an index of ``n`` rows over ``dim`` anchors with ``nnz`` entries keeps the rows and
    bounds (4 to 6 bytes an entry more): only when it is large enough for the bounded path and a query
    with as many anchors as a row would be dense (its postings, about row^2 x n / dim, at least n)."""
    return n >= MIN_ITEMS and n > 0 and (nnz / n) ** 2 >= dim


class Bounds:
    """What the bounded search needs beside the postings: the rows (``ptr``, ``anchors``, ``weights``,
    item by item, anchors ascending), each row's squared norm and each anchor's weight range."""

    def __init__(self, ptr, anchors, weights, norms, ranges):
        self.ptr, self.anchors, self.weights, self.norms, self.ranges = ptr, anchors, weights, norms, ranges
        self.max_norm = float(np.max(norms, initial=0.0))

    PARTS = ("rows_ptr", "rows_anchors", "rows_weights", "norms", "ranges")

    def arrays(self) -> Tuple:
        return self.ptr, self.anchors, self.weights, self.norms, self.ranges

    @classmethod
    def of(cls, rows, postings_ptr: np.ndarray, postings_weights: np.ndarray) -> "Bounds":
        """From CSR ``rows`` (float32, sorted indices, no explicit zeros) and the same vectors' postings
        as stored (``postings_weights`` in the index's dtype): what a search may read is what they store."""
        dim, dtype = len(postings_ptr) - 1, postings_weights.dtype
        ranges = np.zeros((dim, 2), np.float32)
        filled = np.flatnonzero(np.diff(postings_ptr) > 0)
        if len(filled):  # one segment per non-empty anchor: the empty ones between hold nothing
            ranges[filled, 0] = np.minimum(np.minimum.reduceat(postings_weights, postings_ptr[filled]), 0)
            ranges[filled, 1] = np.maximum(np.maximum.reduceat(postings_weights, postings_ptr[filled]), 0)
        norms = np.zeros(rows.shape[0], np.float32)
        for start in range(0, rows.shape[0], 1 << 16):  # squares in float64, a block of rows at a time
            block = rows[start:start + (1 << 16)]
            squares = block.data.astype(dtype).astype(np.float64) ** 2
            norms[start:start + block.shape[0]] = np.bincount(np.repeat(np.arange(block.shape[0]), np.diff(block.indptr)),
                                                              weights=squares, minlength=block.shape[0])
        anchors = rows.indices.astype(np.uint16 if dim <= 1 << 16 else np.int32)
        return cls(rows.indptr.astype(np.int64), anchors, rows.data.astype(dtype), norms, ranges)

    def extend(self, other: "Bounds") -> "Bounds":
        """These rows followed by ``other``'s."""
        anchors_dtype = np.result_type(self.anchors.dtype, other.anchors.dtype)
        return Bounds(np.concatenate([self.ptr, other.ptr[1:] + self.ptr[-1]]),
                      np.concatenate([self.anchors, other.anchors]).astype(anchors_dtype),
                      np.concatenate([self.weights, other.weights]), np.concatenate([self.norms, other.norms]),
                      np.stack([np.minimum(self.ranges[:, 0], other.ranges[:, 0]),
                                np.maximum(self.ranges[:, 1], other.ranges[:, 1])], axis=1))


# Postings read in the time one entry of a candidate's row is rescored (exploratory, 1M items: ~3 us a
# row of 256 entries, which lie at random, against ~2.2 ns a posting, read in order).
ROW_COST = 5
EVERY = np.zeros(0, np.bool_)  # no filter: every item may be a candidate


def search(postings: Tuple, bounds: Bounds, q_idx: np.ndarray, q_val: np.ndarray, k: int,
           acc: np.ndarray, limits: np.ndarray, cand: np.ndarray,
           allowed: Optional[np.ndarray] = None) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(items, exact scores): every item scoring within TIE_EPS of the k-th best or above (among the
    items ``allowed``, a boolean mask, marks; k at most their number), or None when the bounds leave
    too many candidates (the caller then reads every posting). ``postings``: ``(indptr, ids, weights
    as stored or their float16 bits, decode table)``; workspaces: ``acc`` (n, 2) and ``limits`` (2, n)
    float32, ``cand`` n int64."""
    from retrieval.indexes import kernels  # numba: imported once a search needs it

    indptr, ids, weights, table = postings
    order = np.argsort(-np.abs(q_val), kind="stable")
    t_idx, t_val = q_idx[order], q_val[order]
    lo, hi = bounds.ranges[t_idx, 0] * t_val, bounds.ranges[t_idx, 1] * t_val
    low = np.minimum(0.0, np.minimum(lo, hi)).astype(np.float64)
    high = np.maximum(0.0, np.maximum(lo, hi)).astype(np.float64)
    q_sq = t_val.astype(np.float64) ** 2
    lengths = (indptr[t_idx + 1] - indptr[t_idx]).astype(np.int64)
    terms, n = len(t_idx), acc.shape[0]
    scale = float(np.sqrt(q_sq.sum() * max(bounds.max_norm, 0.0)))
    row = max(len(bounds.anchors) / max(n, 1), 1.0)
    heap, cursor = np.empty(k, np.float32), np.empty(terms, np.int64)
    acc[:] = 0.0
    read = 0
    stops = sorted({max(1, -(-terms // part)) for part in STAGES})
    for stage, stop in enumerate(stops):
        kernels.partial(indptr, ids, weights, table, t_idx, t_val, read, stop, acc, cursor, BLOCK)
        read = stop
        # rescore when the candidates' rows cost less than reading on: the next stage, or every posting
        ahead = lengths[read:stops[stage + 1]].sum() + n if stage + 1 < len(stops) else lengths.sum()
        max_cand = max(min(1024, n), int(ahead / (ROW_COST * row)))
        count = kernels.candidates(acc, bounds.norms, float(np.sqrt(q_sq[read:].sum())), float(low[read:].sum()),
                                      float(high[read:].sum()), (read + 4) * 2 * ULP,
                                      4 * (read + terms + 4) * ULP * scale + TIE_EPS, k, heap, limits[0], limits[1], cand,
                                      EVERY if allowed is None else allowed)
        if count <= max_cand:
            return exact_scores(bounds, kernels.rescore, table, q_idx, q_val, cand[:count], k)
    return None


def exact_scores(bounds: Bounds, rescore, table, q_idx, q_val, cand, k) -> Tuple[np.ndarray, np.ndarray]:
    """The candidates' exact scores (from their rows, bit for bit the postings' sums), cut to those
    within TIE_EPS of the k-th best."""
    dim = len(bounds.ranges)
    in_query = np.zeros(dim, np.bool_)
    in_query[q_idx] = True
    q_dense = np.zeros(dim, np.float32)
    q_dense[q_idx] = q_val
    scores = np.empty(len(cand), np.float32)
    weights = bounds.weights.view(np.uint16) if bounds.weights.dtype == np.float16 else bounds.weights
    rescore(bounds.ptr, bounds.anchors, weights, table, in_query, q_dense, cand, scores)
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    keep = scores >= kth - np.float32(TIE_EPS)
    return cand[keep].copy(), scores[keep]
