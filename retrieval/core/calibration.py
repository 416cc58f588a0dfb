"""Scores made probabilities: signals put on one scale, a temperature, and how well it is calibrated.

A classifier's signals (ASIF similarities, the label bridge's cosines) live on unrelated scales that
also move with the number of labels and the anchors. Each row of a signal is standardised over the
labels (zero mean, unit spread), so that signals add with a weight that means the same everywhere,
and the sum divided by a temperature goes through a softmax. The temperature is fitted once, on
validation folds, by the lowest negative log-likelihood of the true labels; the expected calibration
error (ECE) says how far a confidence of c is from being right c of the time.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

# Rows whose spread is below this are flat (every label scores alike): they standardise to zeros.
FLAT = 1e-12


def standardise_rows(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, over its standard deviation; flat rows become zeros.

    >>> standardise_rows(np.array([[1.0, 3.0], [2.0, 2.0]]))
    array([[-1.,  1.],
           [ 0.,  0.]])
    """
    s = np.asarray(scores, np.float64)
    centred = s - s.mean(1, keepdims=True)
    spread = centred.std(1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > FLAT)


def fuse(signals: Dict[str, np.ndarray], weights: Dict[str, float]) -> np.ndarray:
    """The weighted sum of the standardised signals (each (n, labels)); a signal without a weight,
    or with weight 0, is left out.

    >>> fuse({"a": np.array([[0.0, 1.0]]), "b": np.array([[5.0, 1.0]])}, {"a": 1.0, "b": 0.5})
    array([[ 0.5, -0.5]])
    """
    used = [(name, float(weights.get(name, 0.0))) for name in signals if weights.get(name, 0.0)]
    if not used:
        raise ValueError(f"expected a non-zero weight for one of the signals {sorted(signals)}, got {weights}")
    return sum(w * standardise_rows(signals[name]) for name, w in used)


def softmax_rows(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of ``scores / temperature``.

    >>> softmax_rows(np.array([[0.0, 0.0]]), 1.0)
    array([[0.5, 0.5]])
    """
    if not temperature > 0:
        raise ValueError(f"expected a temperature > 0, got {temperature}")
    z = np.asarray(scores, np.float64) / float(temperature)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def log_likelihood(scores: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    """Mean log-probability of the true label (column ``truth[i]`` of row i) at ``temperature``."""
    z = np.asarray(scores, np.float64) / float(temperature)
    top = z.max(1, keepdims=True)
    log_norm = np.log(np.exp(z - top).sum(1)) + top[:, 0]
    return float(np.mean(z[np.arange(len(z)), truth] - log_norm))


# Temperatures tried: geometric from 0.05 to 20, about 5 % apart: finer than any ECE a suite can resolve.
GRID = np.geomspace(0.05, 20.0, 121)


def fit_temperature(scores: Sequence[np.ndarray], truths: Sequence[np.ndarray], grid=GRID,
                    objective: str = "likelihood") -> float:
    """The temperature of the grid that does best over several tasks (one scores matrix and its true
    columns each, every task weighing the same whatever its size): ``"likelihood"``, the highest mean
    log-likelihood of the true labels; ``"worst-ece"``, the lowest expected calibration error of the
    worst-calibrated task.

    >>> fit_temperature([np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])], [np.array([0, 0, 0])]) > 1
    True
    """
    if not len(scores) or len(scores) != len(truths):
        raise ValueError(f"expected as many truth arrays as score matrices (at least one), got {len(scores)} "
                         f"and {len(truths)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"expected an objective in {sorted(OBJECTIVES)}, got {objective!r}")
    fits = [OBJECTIVES[objective](scores, truths, float(t)) for t in grid]
    return float(grid[int(np.argmax(fits))])


def _likelihood(scores, truths, temperature: float) -> float:
    return float(np.mean([log_likelihood(s, np.asarray(t), temperature) for s, t in zip(scores, truths)]))


def _worst_ece(scores, truths, temperature: float) -> float:
    """Minus the worst task's ECE (so that higher is better, as for the likelihood)."""
    worst = 0.0
    for s, t in zip(scores, truths):
        prob = softmax_rows(s, temperature)
        top = prob.argmax(1)
        worst = max(worst, expected_calibration_error(prob[np.arange(len(prob)), top], top == np.asarray(t)))
    return -worst


OBJECTIVES = {"likelihood": _likelihood, "worst-ece": _worst_ece}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width confidence bins of (share of answers in the bin) x |accuracy - mean
    confidence| in it: 0 when a confidence of c is right c of the time.

    >>> expected_calibration_error(np.array([0.9, 0.9]), np.array([1.0, 0.0]))
    0.4
    """
    conf, ok = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    if conf.shape != ok.shape or conf.ndim != 1 or not len(conf):
        raise ValueError(f"expected equal, non-empty 1-d confidence and correctness arrays, got {conf.shape} "
                         f"and {ok.shape}")
    which = np.minimum((conf * bins).astype(int), bins - 1)
    err = 0.0
    for b in np.unique(which):
        m = which == b
        err += m.mean() * abs(ok[m].mean() - conf[m].mean())
    return round(float(err), 12)


def abstention_curve(confidence: np.ndarray, correct: np.ndarray, thresholds: Sequence[float]) -> List[Dict]:
    """For each threshold: the share of inputs answered (top probability at least the threshold) and
    the accuracy on those (None where none is answered).

    >>> abstention_curve(np.array([0.9, 0.4]), np.array([1.0, 0.0]), [0.0, 0.5])
    [{'threshold': 0.0, 'coverage': 1.0, 'accuracy': 0.5}, {'threshold': 0.5, 'coverage': 0.5, 'accuracy': 1.0}]
    """
    conf, ok = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    out = []
    for t in thresholds:
        m = conf >= t
        out.append({"threshold": float(t), "coverage": float(m.mean()),
                    "accuracy": float(ok[m].mean()) if m.any() else None})
    return out
