"""Top-k selection with a meaningful tie-break.

ASIF scores tie a lot: with small k many items share no anchor with the query and all score exactly
0. Ordering those by storage position would be arbitrary (and flatter the evaluation when the target
happens to come first), so ties on the primary score are broken by a secondary score, the dense
cosine relative similarity.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

# Primary scores closer than this count as tied (float32 sums of different orders differ by ~1e-7).
TIE_EPS = 1e-6
# Secondary scores (computed in float64) closer than this count as tied, and fall back to the id.
SECONDARY_EPS = 1e-12


def tie_bucket(primary: np.ndarray) -> np.ndarray:
    """Primary scores rounded to TIE_EPS: equal buckets are ties, broken by the secondary score."""
    return np.round(np.asarray(primary, np.float64) / TIE_EPS)


def topk_with_ties(scores: np.ndarray, k: int,
                   secondary: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the k best entries of a 1-D score array, ties resolved by ``secondary(candidates)``.

    Every item tied with the k-th best is a candidate, so the result is exact whatever the storage
    order. Returns (ids, primary scores, secondary scores); secondary is NaN when not computed.

    >>> ids, s, _ = topk_with_ties(np.array([0.0, 0.5, 0.0, 0.9]), 2)
    >>> ids.tolist()
    [3, 1]
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty.astype(np.float64), empty.astype(np.float64)
    kth = np.partition(scores, n - k)[n - k]
    cand = np.flatnonzero(scores >= kth - TIE_EPS)
    return rank_candidates(cand, scores[cand], k, secondary)


def rank_candidates(cand: np.ndarray, primary: np.ndarray, k: int,
                    secondary: Optional[Callable[[np.ndarray], np.ndarray]] = None):
    """Sort candidates by (primary rounded to TIE_EPS, secondary, id) descending/ascending id; keep k.

    Scores come back in float64, as they were compared: results merged from several searches (the
    shards of a sharded collection) are re-ranked by this same function, and a float32 copy would
    move ~5% of scores into a neighbouring TIE_EPS bucket and reorder them."""
    cand = np.asarray(cand, dtype=np.int64)
    primary = np.asarray(primary, dtype=np.float64)
    bucket = tie_bucket(primary)
    sec = np.full(len(cand), np.nan)
    if secondary is not None and len(cand):
        # Only candidates that can be among the k need the secondary score (it orders equal buckets):
        # those at or above the k-th best bucket. The rest sort after them whatever it would be.
        need = slice(None) if len(cand) <= k else bucket >= np.partition(bucket, len(cand) - k)[len(cand) - k]
        sec[need] = np.asarray(secondary(cand[need]), dtype=np.float64)
    sec_bucket = np.round(np.where(np.isnan(sec), -np.inf, sec) / SECONDARY_EPS)
    # lexsort: last key is the primary key; ids ascending make the order fully deterministic.
    order = np.lexsort((cand, -sec_bucket, -bucket))[:k]
    return cand[order], primary[order], sec[order]


def ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every item in every row (ties by position; used for fusion only)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return r


def rrf(*score_mats: np.ndarray, c: float = 60.0) -> np.ndarray:
    """Reciprocal-rank fusion of several score matrices (rows: queries): the fusion route's score,
    as the suites and ``build --tune`` measure it."""
    return sum(1.0 / (c + 1 + ranks(s)) for s in score_mats)
