"""Choosing N anchors from a larger pool of parallel pairs (the anchor budget).

Every selector looks only at the pool's embeddings of the items' modality (and, for ``coverage``,
at the corpus's): the captions are never used to choose, so the choice cannot favour the queries.
All are deterministic for a given seed.

* ``random``: N pairs drawn uniformly (seeded).
* ``fps``: farthest-point sampling: greedily the pair least similar (cosine) to every pair chosen so
  far, from a seeded start: spread over the pool.
* ``kmeans``: the pair nearest to each of N k-means centroids (spherical, Lloyd iterations in numpy,
  k-means++ start): a pool's dense regions get more anchors.
* ``coverage``: greedy facility location over the *corpus*: each step adds the pair that most raises
  the sum, over corpus items, of their best cosine with a chosen pair: anchors where the corpus is.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.errors import InputError, UnknownNameError

SELECTORS = ("random", "fps", "kmeans", "coverage")
MAX_CELLS = 1 << 25  # coverage: similarities held at once (128 MiB of float32)


def random_select(n_pool: int, n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n_pool, n, replace=False))


def farthest_point(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Greedy max-min selection of n rows by cosine distance, from a seeded random start."""
    x = l2_normalise(x, dtype=None)
    chosen = [int(np.random.default_rng(seed).integers(len(x)))]
    best = x @ x[chosen[0]]
    for _ in range(n - 1):
        i = int(np.argmin(best))
        chosen.append(i)
        best = np.maximum(best, x @ x[i])
    return np.array(chosen)


def kmeans_select(x: np.ndarray, n: int, seed: int = 0, iterations: int = 25) -> np.ndarray:
    """The row nearest to each of n spherical k-means centroids (distinct rows)."""
    x = l2_normalise(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(len(x))]]
    dist = 1.0 - x @ centres[0]
    for _ in range(n - 1):  # k-means++: far rows are likelier starts
        p = np.maximum(dist, 0) ** 2
        i = int(rng.choice(len(x), p=p / p.sum())) if p.sum() > 0 else int(rng.integers(len(x)))
        centres.append(x[i])
        dist = np.minimum(dist, 1.0 - x @ x[i])
    c = np.array(centres)
    for _ in range(iterations):
        assign = np.argmax(x @ c.T, axis=1)
        new = np.zeros_like(c)
        np.add.at(new, assign, x)
        empty = np.bincount(assign, minlength=n) == 0
        new[empty] = c[empty]
        new = l2_normalise(new, dtype=np.float64)
        if np.allclose(new, c):
            break
        c = new
    sims = x @ c.T
    picked, used = [], set()
    for j in range(n):
        for i in np.argsort(-sims[:, j]):
            if int(i) not in used:
                used.add(int(i))
                picked.append(int(i))
                break
    return np.array(picked)


def coverage_select(pool: np.ndarray, corpus: np.ndarray, n: int, block: int = 4096,
                    covered: Optional[np.ndarray] = None) -> np.ndarray:
    """Greedy facility location: each step the pool row that most raises sum_corpus max cosine.
    ``covered``: rows already chosen before (say, the items that have a caption): the greedy starts
    from what they cover. Returned in the order chosen, the most useful first. The (corpus x pool)
    similarities are computed once when they fit in :data:`MAX_CELLS`, else a block at a time."""
    p = l2_normalise(pool, dtype=np.float32)
    c = l2_normalise(corpus, dtype=np.float32)
    best = np.full(len(c), -1.0, np.float32)
    if covered is not None and len(covered):
        k = l2_normalise(covered, dtype=np.float32)
        for s in range(0, len(c), block):
            best[s:s + block] = (c[s:s + block] @ k.T).max(1)
    whole = c @ p.T if len(c) * len(p) <= MAX_CELLS else None
    chosen = []
    taken = np.zeros(len(p), bool)
    for _ in range(n):
        if whole is not None:
            gains = np.maximum(whole - best[:, None], 0).sum(0, dtype=np.float64)
        else:
            gains = np.zeros(len(p), np.float64)
            for s in range(0, len(c), block):  # (corpus block x pool) similarities, never the whole matrix
                gains += np.maximum(c[s:s + block] @ p.T - best[s:s + block, None], 0).sum(0)
        gains[taken] = -1
        i = int(np.argmax(gains))
        chosen.append(i)
        taken[i] = True
        best = np.maximum(best, whole[:, i] if whole is not None else c @ p[i])
    return np.array(chosen)


def select(method: str, pool: np.ndarray, n: int, *, seed: int = 0, corpus: Optional[np.ndarray] = None) -> np.ndarray:
    """Row numbers (ascending) of the ``n`` pool rows ``method`` chooses."""
    if method not in SELECTORS:
        raise UnknownNameError(f"unknown anchor selector {method!r}; known: {', '.join(SELECTORS)}")
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= len(pool):
        raise InputError(f"expected a number of anchors from 1 to the pool's {len(pool)}, got {n!r}")
    if n == len(pool):
        return np.arange(len(pool))
    if method == "random":
        return random_select(len(pool), n, seed)
    if method == "fps":
        return np.sort(farthest_point(pool, n, seed))
    if method == "kmeans":
        return np.sort(kmeans_select(pool, n, seed))
    if corpus is None or len(corpus) == 0:
        raise InputError("expected corpus vectors for select='coverage', got none")
    return np.sort(coverage_select(pool, corpus, n))


def bootstrap_pairs(media_rel, text_rel, accept: int) -> np.ndarray:
    """Propose parallel pairs from unpaired items and texts (the thesis' anchor bootstrapping).

    ``media_rel`` and ``text_rel``: the unpaired media and texts as relative vectors over the current
    anchors (rows; sparse or dense). A pair is proposed when each is the other's best match (mutual
    nearest neighbours); its confidence is the smaller of the two margins over the runner-up. The
    ``accept`` most confident proposals are returned as rows ``(media row, text row, confidence)``,
    best first."""
    import scipy.sparse as sp

    s = media_rel @ text_rel.T
    s = np.asarray(s.toarray() if sp.issparse(s) else s, np.float64)
    if s.shape[0] < 2 or s.shape[1] < 2 or accept < 1:
        return np.zeros((0, 3))
    best_t, best_m = np.argmax(s, axis=1), np.argmax(s, axis=0)
    top2_t = np.partition(s, -2, axis=1)[:, -2:]          # per media row: runner-up, best
    top2_m = np.partition(s, -2, axis=0)[-2:, :]          # per text column
    out = []
    for i, j in enumerate(best_t):
        if best_m[j] == i:
            margin = min(top2_t[i, 1] - top2_t[i, 0], top2_m[1, j] - top2_m[0, j])
            out.append((i, int(j), float(margin)))
    out.sort(key=lambda r: -r[2])
    return np.array(out[:accept], dtype=np.float64).reshape(-1, 3)
