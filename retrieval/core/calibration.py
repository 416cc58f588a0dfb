"""Scores made probabilities: signals put on one scale, a temperature, and how well it is calibrated.

A classifier's signals (ASIF similarities, the label bridge's cosines) live on unrelated scales that
also move with the number of labels and the anchors. Each row of a signal is standardised over the
labels (zero mean, unit spread), so that signals add with a weight that means the same everywhere,
and the sum divided by a temperature goes through a softmax. The temperature follows the number of
labels (:class:`LabelTemperature`: a scale and a power), fitted once on validation folds; the expected
calibration error (ECE) says how far a confidence of c is from being right c of the time.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    array([[-0.5,  0.5]])
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

# Powers of the number of labels tried (0 included: one temperature whatever the labels), 0.025 apart.
POWERS = np.round(np.linspace(-0.6, 0.3, 37), 4)


@dataclass(frozen=True)
class LabelTemperature:
    """A temperature that follows the number of labels: ``scale x (labels / REFERENCE_LABELS) ** power``.

    Each signal is standardised over the labels, so every task's scores have the same spread whatever
    its number of labels; but the more labels, the more competitors share the probability, and a task
    of 97 labels came out underconfident where one of 5 came out overconfident at one temperature
    (results/experiments/classify_signals.md). ``power`` 0 is one temperature for every task.

    >>> LabelTemperature(1.2, -0.5)(40)
    0.6
    """
    scale: float
    power: float = 0.0

    def __post_init__(self):
        if not (np.isfinite(self.scale) and self.scale > 0 and np.isfinite(self.power)):
            raise ValueError(f"expected a temperature scale > 0 and a finite power, got scale {self.scale} and "
                             f"power {self.power}")

    def __call__(self, n_labels: int) -> float:
        if n_labels < 1:
            raise ValueError(f"expected at least one label, got {n_labels}")
        return float(self.scale * (n_labels / REFERENCE_LABELS) ** self.power)

    def to_spec(self) -> Dict[str, float]:
        return {"scale": float(self.scale), "power": float(self.power)}

    @classmethod
    def of(cls, value) -> "LabelTemperature":
        """A LabelTemperature as it is, a number as one temperature for every number of labels."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(float(value["scale"]), float(value.get("power", 0.0)))
        try:
            return cls(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"expected a temperature (a number > 0, or a LabelTemperature), got {value!r}") from None


# The number of labels at which a LabelTemperature is its scale: about the suites' typical task.
REFERENCE_LABELS = 10


def fit_temperature(scores: Sequence[np.ndarray], truths: Sequence[np.ndarray], grid=GRID,
                    objective: str = "likelihood") -> float:
    """The one temperature of the grid that does best over several tasks (one scores matrix and its
    true columns each, every task weighing the same whatever its size): ``"likelihood"``, the highest
    mean log-likelihood of the true labels; ``"worst-ece"``, the lowest expected calibration error of
    the worst-calibrated task.

    >>> fit_temperature([np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])], [np.array([0, 0, 0])]) > 1
    True
    """
    return fit_label_temperature(scores, truths, grid, (0.0,), objective).scale


def fit_label_temperature(scores: Sequence[np.ndarray], truths: Sequence[np.ndarray], grid=GRID, powers=POWERS,
                          objective: str = "likelihood") -> LabelTemperature:
    """The :class:`LabelTemperature` (a scale of ``grid``, a power of ``powers``) that does best over
    several tasks, by ``objective`` as in :func:`fit_temperature`; a tie goes to the power nearest 0."""
    if not len(scores) or len(scores) != len(truths):
        raise ValueError(f"expected as many truth arrays as score matrices (at least one), got {len(scores)} "
                         f"and {len(truths)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"expected an objective in {sorted(OBJECTIVES)}, got {objective!r}")
    best, best_fit = None, -np.inf
    for power in sorted(powers, key=abs):
        for scale in grid:
            rule = LabelTemperature(float(scale), float(power))
            fit = OBJECTIVES[objective](scores, truths, [rule(np.shape(s)[1]) for s in scores])
            if fit > best_fit:
                best, best_fit = rule, fit
    return best


def _likelihood(scores, truths, temperatures) -> float:
    return float(np.mean([log_likelihood(s, np.asarray(t), temp) for s, t, temp in zip(scores, truths, temperatures)]))


def _worst_ece(scores, truths, temperatures) -> float:
    """Minus the worst task's ECE (so that higher is better, as for the likelihood)."""
    worst = 0.0
    for s, t, temp in zip(scores, truths, temperatures):
        prob = softmax_rows(s, temp)
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


def calibrated_ece(confidence: np.ndarray, draws: int = 200, seed: int = 0, bins: int = 15) -> float:
    """The ECE a perfectly calibrated classifier shows with these confidences on this many inputs: the
    median over ``draws`` simulations in which each answer is right with probability its confidence.
    ECE is biased upwards on few inputs (each bin's accuracy is a small sample), so a measured ECE is
    read against this floor.

    >>> calibrated_ece(np.full(10000, 0.7)) < 0.02 < calibrated_ece(np.full(50, 0.7))
    True
    """
    if draws < 1:
        raise ValueError(f"expected at least one draw, got {draws}")
    conf = np.asarray(confidence, np.float64)
    rng = np.random.default_rng(seed)
    return float(np.median([expected_calibration_error(conf, (rng.random(len(conf)) < conf).astype(float), bins)
                            for _ in range(draws)]))


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
