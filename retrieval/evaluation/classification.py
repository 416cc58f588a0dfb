"""Zero-shot classification tasks as the suites and the validation script measure them.

A task is labelled inputs with the anchors they are classified against. Its signals are computed
once by the product's own classifier (:class:`retrieval.api.classify.ZeroShotClassifier`); weights and
temperatures are then applied to them exactly as the classifier's :meth:`fused` does, so a grid of
weights costs no re-encoding and a row measures what the product answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from retrieval.api.classify import TEMPERATURES, Side, ZeroShotClassifier, temperature_rules
from retrieval.api.head_signals import ClassHead
from retrieval.core.calibration import abstention_curve, expected_calibration_error, fuse, softmax_rows
from retrieval.core.metrics import paired_interval, query_recall


@dataclass
class ClassTask:
    """Inputs (vectors, and the image network's logits when it has a head) with their true labels,
    classified against ``sides``; ``corpus``: the collection they belong to (for centring)."""
    name: str
    labels: List[str]
    templates: List[str]
    image: Side
    text: Side
    inputs: np.ndarray
    truth: np.ndarray            # column of each input's true label
    logits: Optional[np.ndarray] = None
    corpus: Optional[np.ndarray] = None

    def subset(self, rows: np.ndarray, name: str) -> "ClassTask":
        return ClassTask(name, self.labels, self.templates, self.image, self.text, self.inputs[rows], self.truth[rows],
                         None if self.logits is None else self.logits[rows], self.corpus)


class TaskSignals:
    """A task's signals, computed once by the product's classifier."""

    def __init__(self, task: ClassTask, text_encoder, head: Optional[ClassHead], **classifier):
        self.task = task
        self.clf = ZeroShotClassifier(task.labels, task.templates, text_encoder=text_encoder, image=task.image,
                                      text=task.text, corpus=task.corpus, head=head, **classifier)
        self.signals = self.clf.signals(task.inputs, task.logits)

    def used(self, weights: Dict[str, float], signals: Optional[Sequence[str]] = None) -> List[str]:
        """What the classifier fuses under ``weights``, of ``signals`` (default: every one it has)."""
        have = self.signals if signals is None else [s for s in signals if s in self.signals]
        return ["asif"] + sorted(s for s in have if s != "asif" and weights.get(s, 0.0))

    def fused(self, weights: Dict[str, float], signals: Optional[Sequence[str]] = None) -> np.ndarray:
        return fuse({s: self.signals[s] for s in self.used(weights, signals)}, weights)

    def measure(self, weights: Optional[Dict[str, float]] = None, temperatures: Optional[Dict] = None,
                signals: Optional[Sequence[str]] = None) -> Dict:
        """top-1, top-5, expected calibration error, and the per-input correctness and confidence."""
        weights = self.clf.weights if weights is None else weights
        temperatures = temperature_rules(TEMPERATURES if temperatures is None else temperatures)
        scores = self.fused(weights, signals)
        key = "+".join(sorted(self.used(weights, signals)))
        prob = softmax_rows(scores, temperatures[key](len(self.task.labels))) if key in temperatures else None
        return measure_scores(scores, self.task.truth, prob)


def measure_scores(scores: np.ndarray, truth: np.ndarray, prob: Optional[np.ndarray] = None) -> Dict:
    """top-1 and top-5 of a score matrix, ties counted fairly (a label tied with the true one at the
    top shares the credit: retrieval.core.metrics), and, with probabilities, the expected calibration
    error of the top answer's probability (its answer: the first of the best, as a prediction's)."""
    correct = query_recall(scores, truth, 1)
    out = {"top-1": float(correct.mean()), "top-5": float(query_recall(scores, truth, 5).mean()), "correct": correct}
    if prob is not None:
        top = np.argmax(scores, axis=1)
        conf = prob[np.arange(len(prob)), top]
        out.update(confidence=conf, ece=expected_calibration_error(conf, (top == truth).astype(float)))
    return out


def majority(truth: np.ndarray) -> float:
    """The share of the commonest label: what always answering it scores."""
    return float(np.bincount(truth).max() / len(truth))


# The classifier's default before label-balanced centring (2026-12-06), the suites' comparison row.
BEFORE_WEIGHTS = {"asif": 1.0, "tree": 0.25, "bridge": 0.0}
BEFORE_TEMPERATURES = {"asif": 1.05, "asif+tree": 1.05}

# The ASIF signal alone: the suites' tables of projector variants compare ASIF with ASIF, not fusions.
ASIF_ONLY = {"asif": 1.0}

# Abstention thresholds of the curves the suites report: answer only when the top probability is at least t.
ABSTAIN_AT = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def baseline_signals(task: ClassTask, text_encoder) -> TaskSignals:
    """Plain ASIF (k=64 p=8, raw, centred on nothing): the baseline row of every suite."""
    from retrieval.api.classify import Side
    from retrieval.core.projector import chain_spec

    spec = chain_spec(k=min(64, len(task.image.anchors)), p=8.0)  # k=64, or every anchor when fewer
    plain = ClassTask(task.name, task.labels, task.templates, Side(spec, task.image.anchors),
                      Side(spec, task.text.anchors), task.inputs, task.truth)
    return TaskSignals(plain, text_encoder, None)


def signal_rows(task: ClassTask, text_encoder, head) -> Tuple[List[List], Dict, Dict[str, Dict]]:
    """The rows every classification suite reports for a test task: chance, the majority class, plain
    ASIF, each head signal alone, the default before and the default; a summary with the default's
    gain over the one before and its abstention curve; the measures of both defaults."""
    ts = TaskSignals(task, text_encoder, head)
    n_l = len(task.labels)
    default = ts.measure()
    before = TaskSignals(task, text_encoder, head, balance_rounds=0).measure(BEFORE_WEIGHTS, BEFORE_TEMPERATURES)
    plain = baseline_signals(task, text_encoder).measure({"asif": 1.0}, signals=["asif"])
    rows = [["chance", 1 / n_l, min(1.0, 5 / n_l), ""], ["majority class", majority(task.truth), "", ""],
            ["plain ASIF (k=64 p=8, raw)", plain["top-1"], plain["top-5"], ""],
            ["the label bridge alone", *_alone(ts, "bridge")], ["the WordNet tree alone", *_alone(ts, "tree")],
            ["the default before (2026-12-06: the corpus's plain mean, tree 0.25, temperature 1.05)",
             before["top-1"], before["top-5"], before["ece"]],
            [f"**default** (signals {', '.join(ts.used(ts.clf.weights))}, calibrated)", default["top-1"],
             default["top-5"], default["ece"]]]
    gain = paired_interval(before["correct"], default["correct"])
    curve = abstention_curve(default["confidence"], default["correct"], ABSTAIN_AT)
    return rows, {"rows": [dict(zip(["method", "top-1", "top-5", "ECE"], r)) for r in rows], "gain top-1": gain,
                  "abstention": curve, "labels": task.labels, "inputs": len(task.truth),
                  "covered by the tree": ts.clf.head.covered if ts.clf.head else []}, {"the default": default,
                                                                                 "the default before": before}


def _alone(ts: TaskSignals, signal: str) -> List:
    if signal not in ts.signals:
        return ["n/a", "n/a", ""]
    m = measure_scores(ts.signals[signal], ts.task.truth)
    return [m["top-1"], m["top-5"], ""]


def report_signals(report, title: str, task: ClassTask, text_encoder, head) -> Dict:
    """:func:`signal_rows` as a table, a paragraph and the abstention curve's plot in a suite's report;
    returns its summary."""
    rows, out, measures = signal_rows(task, text_encoder, head)
    report.table(title, ["method", "top-1", "top-5", "ECE"], rows)
    series = {}
    for name, m in measures.items():
        curve = [c for c in abstention_curve(m["confidence"], m["correct"], np.linspace(0, 0.95, 39)) if c["coverage"]]
        series[name] = ([c["coverage"] for c in curve], [c["accuracy"] for c in curve])
    slug = "".join(ch if ch.isalnum() else "-" for ch in task.name.lower()).strip("-")
    report.plot(f"abstention-{slug}.png", f"{task.name}: answering only above a probability", "coverage (share answered)",
                "top-1 accuracy of the answers", series)
    g, cov = out["gain top-1"], out["covered by the tree"]
    report.text(f"Default against the default before, top-1: {g['gain']:+.3f}, 95% interval {g['low']:+.3f} … "
                f"{g['high']:+.3f} (paired bootstrap, `retrieval.core.metrics.paired_interval`). Labels the WordNet "
                f"tree reaches: {', '.join(cov) or 'none'}. Abstention (answer only when the top probability is at "
                f"least t): " + "; ".join(f"t {c['threshold']:.1f}: coverage {c['coverage']:.2f}, accuracy "
                                          f"{'-' if c['accuracy'] is None else format(c['accuracy'], '.3f')}"
                                          for c in out["abstention"]) + ".")
    return out
