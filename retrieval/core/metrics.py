"""Retrieval metrics with ties counted fairly.

With ASIF scores many items tie (often at exactly 0). A metric that lets the target win ties
flatters the method; one that lets it lose punishes it. Here the target's rank is the expected rank
under a uniformly random order of the items tied with it: if ``g`` items score strictly higher and
``t`` others tie, the target is equally likely to sit at any rank g+1 … g+t+1.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from retrieval.core.ranking import TIE_EPS, tie_bucket  # the engine's notion of a tie, so metrics and search agree


def greater_and_tied(scores: np.ndarray, targets: np.ndarray, eps: float = TIE_EPS):
    """For each row, how many items score above the target and how many others tie with it."""
    scores = np.asarray(scores, dtype=np.float64)
    t = scores[np.arange(len(scores)), targets][:, None]
    greater = (scores > t + eps).sum(1)
    tied = (np.abs(scores - t) <= eps).sum(1) - 1
    return greater, tied


def recall_at_k(greater: np.ndarray, tied: np.ndarray, k: int) -> float:
    """Mean probability that the target is in the top k under a random order of ties."""
    return float(np.mean(np.clip((k - greater) / (tied + 1.0), 0.0, 1.0)))


def query_recall(scores: np.ndarray, targets: Sequence[int], k: int) -> np.ndarray:
    """Each query's probability of finding its target in the top k (ties counted fairly): the
    per-query terms whose mean is R@k, kept so that two methods can be compared query by query."""
    g, t = greater_and_tied(scores, np.asarray(targets))
    return np.clip((k - g) / (t + 1.0), 0.0, 1.0)


def paired_interval(baseline: np.ndarray, method: np.ndarray, *, level: float = 0.95, resamples: int = 10000,
                    seed: int = 0) -> Dict[str, float]:
    """The mean per-query gain of ``method`` over ``baseline`` and a percentile bootstrap interval.

    Both arrays hold one score per query (a hit at k, a correct label), row i the same query. The
    queries are resampled with replacement and both methods see the same resample (paired), so the
    interval reflects how much the gain depends on which queries a suite happened to hold: a small
    suite's interval is wide. Seeded, so a rerun prints the same interval.

    >>> paired_interval(np.zeros(50), np.ones(50))
    {'gain': 1.0, 'low': 1.0, 'high': 1.0, 'queries': 50}
    """
    a, b = np.asarray(baseline, np.float64), np.asarray(method, np.float64)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"expected two equal, non-empty 1-d arrays of per-query scores, got shapes {a.shape} and {b.shape}")
    if not 0 < level < 1:
        raise ValueError(f"expected a confidence level between 0 and 1, got {level}")
    if resamples < 1:
        raise ValueError(f"expected at least one bootstrap resample, got {resamples}")
    diff = b - a
    rng = np.random.default_rng(seed)
    # in blocks of resamples, so that 5,000 queries do not need one 10,000 x 5,000 index array
    means = np.concatenate([diff[rng.integers(0, len(diff), size=(min(1000, resamples - s), len(diff)))].mean(1)
                            for s in range(0, resamples, 1000)])
    tail = (1 - level) / 2
    return {"gain": float(diff.mean()), "low": float(np.quantile(means, tail)),
            "high": float(np.quantile(means, 1 - tail)), "queries": int(len(diff))}


def mean_reciprocal_rank(greater: np.ndarray, tied: np.ndarray) -> float:
    """Mean over queries of E[1/rank], rank uniform on g+1 … g+t+1 (harmonic-number difference)."""
    out = np.empty(len(greater))
    for i, (g, t) in enumerate(zip(greater, tied)):
        out[i] = np.mean(1.0 / np.arange(g + 1, g + t + 2))
    return float(out.mean())


def retrieval_metrics(scores: np.ndarray, targets: Sequence[int], ks=(1, 5, 10)) -> Dict[str, float]:
    """R@k for each k, MRR, and the share of queries whose target was tied with something.

    >>> retrieval_metrics(np.array([[0.0, 0.0, 1.0, 0.0]]), [0], ks=(1, 3))["R@3"]
    0.6666666666666666
    """
    targets = np.asarray(targets)
    g, t = greater_and_tied(scores, targets)
    out = {f"R@{k}": recall_at_k(g, t, k) for k in ks}
    out["MRR"] = mean_reciprocal_rank(g, t)
    out["tied"] = float(np.mean(t > 0))
    return out


def lexicographic(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """One score array that orders like (primary rounded to TIE_EPS, then secondary), as the engine does.

    Secondary scores lie in [-1, 1]; they are squeezed below one primary bucket.
    """
    return tie_bucket(primary) + 0.25 * (np.asarray(secondary, np.float64) + 1.0)
