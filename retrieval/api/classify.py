"""Zero-shot classification: every signal the engine has, fused, calibrated, with abstention.

Each label is written into several prompt templates; the prompts' text embeddings are averaged per
class (prompt ensembling, as for CLIP) and relativised against the text anchors. An image is
relativised against the image anchors: the *asif* signal is how well its relative vector matches each
label's. Where the image network has its own classifier head, its logits add the *tree* and *bridge*
signals (:mod:`retrieval.api.head_signals`); where the inputs come from a corpus of at least
MIN_CORPUS items, the *neighbours* signal is the votes of each input's nearest corpus items in the
encoder's own space (:mod:`retrieval.core.neighbour_votes`). Each signal is standardised over the
labels, the signals are summed with weights (:data:`SIGNAL_WEIGHTS`), and a softmax at a temperature
fitted for that set of signals (:data:`TEMPERATURES`) makes the sum a probability. Ties are broken by
the dense relative cosine. An answer whose top probability is below ``abstain`` is "none of these".
"""

from __future__ import annotations

import os
import string
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Optional, Sequence

import numpy as np

from retrieval.api.head_signals import ClassHead, HeadSignals
from retrieval.core.calibration import LabelTemperature, fuse, softmax_rows
from retrieval.core.centre import label_balanced_mean
from retrieval.core.neighbour_votes import CorpusNeighbours, NeighbourVotes
from retrieval.core.projector import Projector, Spec, fit_projector, is_blocks, spec_block, spec_without
from retrieval.core.ranking import topk_with_ties
from retrieval.encoders.base import Encoder, l2_normalise
from retrieval.errors import InputError

DEFAULT_TEMPLATES = ("a photo of a {}", "an emoji of {}", "an image of {}")

# Below this many items a corpus's mean is mostly its few items' own classes, and centring on it
# would remove what tells them apart: the anchors' mean is used instead. A judgement, not a fit: the
# suites' corpora (5,000 MNIST digits, 1,758 Twemoji drawings) are far above it.
MIN_CORPUS = 100

# Rounds of label-balanced centring (core.centre.label_balanced_mean), from the anchors' mean: 1 and 3
# were measured on classification's validation tasks, 3 kept (results/experiments/classify_centring.md).
BALANCE_ROUNDS = 3

# A corpus is centred on through at most this many of its items, evenly spaced: the balanced mean
# classifies them once per round, and a few thousand settle a mean as well as a million do.
CORPUS_SAMPLE = 4096

# How much each signal counts in the fused score (each standardised over the labels first), and the
# temperature, as a function of the number of labels, that makes the fused score a calibrated
# probability for each set of signals used: both chosen on classification's validation folds in every
# labelled suite (results/experiments/classify_signals.md,
# `.venv/bin/python scripts/classify_signals.py --out results/experiments/classify_signals.md`).
SIGNAL_WEIGHTS = {"asif": 1.0, "tree": 2.0, "bridge": 0.0, "neighbours": 2.0}
TEMPERATURES = {"asif": LabelTemperature(1.1616, -0.175), "asif+neighbours": LabelTemperature(3.85, 0.0),
                "asif+neighbours+tree": LabelTemperature(3.4841, 0.125)}
# without votes the tree weighs 0 (WEIGHTS_WITHOUT_VOTES), and the bridge always does: a set with either
# fuses as the set without it
TEMPERATURES["asif+tree"] = TEMPERATURES["asif"]
TEMPERATURES.update({key.replace("asif", "asif+bridge"): rule for key, rule in list(TEMPERATURES.items())})

# Without a corpus of MIN_CORPUS items there are no votes, and the tree at the weight chosen beside them
# lowered validation top-1 where it stood alone (emoji subgroups 0.325 -> 0.169 at tree 2): these are the
# best grid point without votes, chosen by the same rule (results/experiments/classify_signals.md).
WEIGHTS_WITHOUT_VOTES = {"asif": 1.0, "tree": 0.0, "bridge": 0.0}

# How many corpus items vote for an input's labels, and the temperature that makes their ASIF scores
# the probabilities they vote with (core.neighbour_votes): a small grid measured on the same
# validation folds (results/experiments/classify_signals.md).
NEIGHBOUR_VOTES = {"neighbours": 10, "temperature": 1.0}


@dataclass(frozen=True)
class CorpusSample:
    """Vectors of a corpus's items, at most CORPUS_SAMPLE of them evenly spaced, and how many items
    the corpus has: what a collection hands its classifiers so that a request does not read every item."""
    vectors: np.ndarray
    count: int

    @cached_property
    def neighbours(self) -> CorpusNeighbours:
        """The sample prepared for the neighbours' votes once, whatever the labels (a float64 copy)."""
        return CorpusNeighbours(self.vectors)

    @classmethod
    def of(cls, items: np.ndarray) -> "CorpusSample":
        step = max(1, -(-len(items) // CORPUS_SAMPLE))
        return cls(np.asarray(items[::step], np.float32), len(items))


@dataclass
class Prediction:
    """An input's top labels, best first, with their fused scores and probabilities; ``abstained``
    when the top probability is below the threshold asked for ("none of these")."""
    labels: List[str]
    scores: List[float]
    probabilities: List[float] = field(default_factory=list)
    abstained: bool = False

    @property
    def label(self) -> Optional[str]:
        """The answer: the top label, or None when abstained."""
        return None if self.abstained or not self.labels else self.labels[0]

    def to_dict(self) -> Dict:
        return {"labels": self.labels, "scores": [round(float(s), 6) for s in self.scores],
                "probabilities": [round(float(p), 6) for p in self.probabilities], "abstained": self.abstained}


class Classification(list):
    """The predictions of a batch (a list, one :class:`Prediction` an input), with what made them:
    ``signals`` fused, what the inputs were ``centred_on``, and the labels the WordNet tree reached."""

    def __init__(self, predictions: Sequence[Prediction], signals: Sequence[str], centred_on: str = "anchors",
                 tree_labels: Sequence[str] = ()):
        super().__init__(predictions)
        self.signals, self.centred_on, self.tree_labels = list(signals), centred_on, list(tree_labels)

    def about(self) -> str:
        """One line for a report: "signals: asif + tree (labels it reaches: animals, food)"."""
        reach = f" (labels the WordNet tree reaches: {', '.join(self.tree_labels)})" if "tree" in self.signals else ""
        return f"signals: {' + '.join(self.signals)}{reach}; inputs centred on the {self.centred_on}"


def check_template(template) -> str:
    """A prompt template must hold exactly one ``{}`` (where the label goes) and no other field;
    literal braces are written ``{{`` and ``}}``. Returns it, or raises an InputError that says why.

    >>> check_template("a photo of a {}")
    'a photo of a {}'
    """
    if not isinstance(template, str) or not template.strip():
        raise InputError(f"expected a prompt template such as 'a photo of a {{}}', got {template!r}")
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # "{}{", "}" alone...
        raise InputError(f"expected a prompt template with exactly one {{}} where the label goes (literal braces "
                         f"as {{{{ and }}}}), got {template!r}: {exc}") from None
    if fields != [("", "", None)]:
        raise InputError(f"expected a prompt template with exactly one {{}} where the label goes and no other "
                         f"field, got {template!r} with {len(fields)} field(s)"
                         f"{': ' + ', '.join(repr('{' + f + ('!' + c if c else '') + (':' + sp if sp else '') + '}') for f, sp, c in fields) if fields else ''}")
    return template


def check_labels(labels: Sequence[str]) -> List[str]:
    """Labels stripped; refused when empty, repeated, or fewer than two (a classifier picks one of them)."""
    labels = [str(lab).strip() for lab in labels]
    if not labels or any(not lab for lab in labels):
        raise InputError(f"expected non-empty labels, got {labels[:5]!r}")
    if len(labels) < 2:
        raise InputError(f"expected at least two labels to choose between, got {labels!r}: for 'is it X or not', "
                         f"add the alternatives (or a label such as 'something else') and use --abstain")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise InputError(f"expected distinct labels, got duplicates {dup[:5]}")
    return labels


def warn_too_long(text_encoder, prompts: Sequence[str], per_label: int) -> None:
    """Warn, naming them, of the labels whose prompts the text encoder cuts at its window: what is cut
    does not count, so two long labels that differ only at their end would score alike."""
    cut = getattr(text_encoder, "too_long", lambda _: [])(prompts)
    if cut:
        shown = sorted({prompts[i] for i in cut})[:3]
        warnings.warn(f"{len({i // per_label for i in cut})} label(s) make prompts longer than the text encoder's "
                      f"window ({getattr(text_encoder, 'max_length', '?')} tokens), cut when encoded: "
                      f"{', '.join(repr(p[:80]) for p in shown)}; shorter labels are compared whole",
                      stacklevel=3)


def check_templates(templates: Sequence[str]) -> List[str]:
    if isinstance(templates, str) or not templates:
        raise InputError(f"expected a list of prompt templates, each with one {{}}, got {templates!r}")
    return [check_template(t) for t in templates]


def labels_given(value: str) -> List[str]:
    """Labels as a command line gives them: a file's (:func:`read_labels`) when ``value`` names one,
    else ``value`` split at its commas ("cat, dog, bird"), as the server's form takes them. A file
    wins, so one whose name has a comma is still read; blanks between commas are kept, for
    :func:`check_labels` to refuse with what was given."""
    if os.path.exists(value):
        return read_labels(value)
    if "," in value:
        return [part.strip() for part in value.split(",")]
    raise InputError(f"expected a labels file (one label a line) or labels separated by commas ('cat, dog, bird'), "
                     f"got {value!r}: no such file, and no comma")


def read_labels(path) -> List[str]:
    """One label a line; blank lines and lines starting with '#' are ignored."""
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        raise InputError(f"expected a readable labels file (one label a line), got {str(path)!r}: {exc}") from exc
    if not labels:
        raise InputError(f"expected at least one label in {str(path)!r}, found none")
    return labels


@dataclass(frozen=True)
class Side:
    """One side of a classifier: its projector spec (a collection's, as stored) and the anchor vectors
    it is fitted on, with the background bank's vectors beside them when the spec has a bank block."""
    spec: Spec
    anchors: np.ndarray
    bank: Optional[np.ndarray] = None

    def edited(self, *, keep_whitening: bool, use_background: bool) -> Spec:
        """The spec as classification uses it: without whitening unless kept, without the bank's block
        unless used. Whitening was chosen for retrieval: on classification's own validation folds, in
        two domains (emoji groups and subgroups on the anchor concepts' folds, MNIST's first half),
        mean top-1 was 0.377 without against 0.358 with lambda 9, both without the bank; 0.399 and
        0.369 with it. The bank raised it (0.377 to 0.399), so it is kept by default
        (results/experiments/classify_validation.md)."""
        spec = self.spec if keep_whitening else spec_without(self.spec, "whiten")
        return spec if use_background else spec_block(spec, "anchors")

    def fit(self, spec: Spec, style=None) -> Projector:
        return fit_projector(spec, self.anchors, bank=self.bank if is_blocks(spec) else None, style=style)


def temperature_rules(temperatures: Dict) -> Dict[str, LabelTemperature]:
    """Each set of signals' temperature as a LabelTemperature (a number: the same for every number of labels)."""
    try:
        return {key: LabelTemperature.of(value) for key, value in dict(temperatures).items()}
    except ValueError as exc:
        raise InputError(f"expected temperatures by set of signals, e.g. {{'asif': 1.1}}: {exc}") from None


def label_scores(proj: Projector, image_vectors: np.ndarray, class_rel) -> np.ndarray:
    """(n_images, n_labels) ASIF similarities of inputs relativised by ``proj`` to the labels' relative vectors."""
    s = proj.transform_rows(image_vectors) @ class_rel.T
    return np.asarray(s.toarray() if hasattr(s, "toarray") else s, np.float32)


class ZeroShotClassifier:
    def __init__(self, labels: Sequence[str], templates: Sequence[str], *, text_encoder: Encoder, image: Side,
                 text: Side, style=None, corpus=None, keep_whitening: bool = False, use_background: bool = True,
                 head: Optional[ClassHead] = None, weights: Optional[Dict[str, float]] = None,
                 temperatures: Optional[Dict] = None, balance_rounds: int = BALANCE_ROUNDS):
        """``image`` / ``text``: each side's spec and anchors (:class:`Side`); classification's variations
        are edits of those specs (:meth:`Side.edited`): the whitening left out unless ``keep_whitening``,
        the background bank kept unless ``use_background`` is False. ``style``: the collection's style
        normaliser, for a ``style`` step of the image side. ``corpus``: vectors of the corpus the inputs
        come from (a collection's items), or a CorpusSample of them: with at least MIN_CORPUS items,
        inputs are centred on the corpus's mean with its predicted labels weighing alike
        (core.centre.label_balanced_mean) instead of on the image anchors' mean, which on inputs of
        another domain than the anchors lifts top-1 (results/digits, results/categories), and its items
        vote for the inputs' labels (the *neighbours* signal, :data:`NEIGHBOUR_VOTES`). None or fewer:
        the anchors' mean, and no votes. ``balance_rounds``: the balancing's rounds; 0 takes the
        corpus's plain mean (every item weighing alike, the classifier's centring before 2026-12-07).
        Either way an input's labels never depend on the other inputs classified with it.
        ``head``: the image network's classifier head (:class:`ClassHead`), for the tree and bridge
        signals of inputs that come with logits. ``weights`` / ``temperatures``: the signals' weights
        and the fused score's temperatures, each a number or a LabelTemperature (default
        :data:`SIGNAL_WEIGHTS` with votes, :data:`WEIGHTS_WITHOUT_VOTES` without, :data:`TEMPERATURES`)."""
        if balance_rounds < 0:
            raise InputError(f"expected balance_rounds >= 0 (0: the corpus's plain mean), got {balance_rounds}")
        self.labels, self.templates = check_labels(labels), check_templates(templates)
        self.temperatures = temperature_rules(TEMPERATURES if temperatures is None else temperatures)
        edits = dict(keep_whitening=keep_whitening, use_background=use_background)
        prompts = [t.format(lab) for lab in self.labels for t in self.templates]
        warn_too_long(text_encoder, prompts, len(self.templates))
        vecs = text_encoder.encode(prompts).reshape(len(self.labels), len(self.templates), -1)
        class_vecs = l2_normalise(vecs.mean(1))
        text_proj = text.fit(text.edited(**edits))
        self.class_rel, self.class_dense = text_proj.transform(class_vecs), text_proj.dense(class_vecs)
        self.head = None if head is None else HeadSignals(head, self.labels, class_vecs)
        self.image_proj = image.fit(image.edited(**edits), style=style)
        # what the inputs were centred on, for reports: "corpus (N items, ...)" or "anchors"
        self.centred_on = "anchors"
        sample = None if corpus is None else corpus if isinstance(corpus, CorpusSample) else CorpusSample.of(corpus)
        if sample is not None and sample.count >= MIN_CORPUS and self.image_proj.centres:
            if balance_rounds:
                mean = self._balanced_mean(sample.vectors, image.anchors, balance_rounds)
                how = ", its labels weighing alike"
            else:
                mean, how = self.image_proj.input_mean(sample.vectors), ""
            self.image_proj = self.image_proj.centred_on(mean)
            self.centred_on = f"corpus ({sample.count} items{how})"
        self.votes = None
        if sample is not None and sample.count >= MIN_CORPUS:
            self.votes = NeighbourVotes(**NEIGHBOUR_VOTES).fit(sample.neighbours, self.scores(sample.vectors))
        default = SIGNAL_WEIGHTS if self.votes is not None else WEIGHTS_WITHOUT_VOTES
        self.weights = dict(default if weights is None else weights)

    def _balanced_mean(self, corpus: np.ndarray, anchors: np.ndarray, rounds: int) -> np.ndarray:
        proj = self.image_proj

        def predict(mean):  # the corpus in one batch: its labels only steer a mean, not an answer
            s = proj.centred_on(mean).transform(corpus) @ self.class_rel.T
            return np.asarray(s.toarray() if hasattr(s, "toarray") else s).argmax(1)

        # each label's mean is taken of the rows as they reach the centring step, prepared once
        return label_balanced_mean(lambda rows: rows.mean(0, dtype=np.float64), predict,
                                   proj.at_centre(corpus), proj.input_mean(anchors), rounds)

    def signals_used(self, *, logits: bool = False, label_vectors: bool = False) -> List[str]:
        """The signals a prediction fuses for inputs with (or without) logits or label vectors: asif
        always, the head's where it and the inputs allow, the neighbours' where there is a corpus, each
        only where its weight is not 0."""
        extra = [] if self.head is None else self.head.available(logits=logits, label_vectors=label_vectors)
        extra += [] if self.votes is None else ["neighbours"]
        return ["asif"] + [s for s in extra if self.weights.get(s, 0.0)]

    def signals(self, image_vectors: np.ndarray, logits: Optional[np.ndarray] = None,
                label_vectors: Optional[np.ndarray] = None, votes: bool = True) -> Dict[str, np.ndarray]:
        """Each signal's (n_images, n_labels) scores, unfused, whatever its weight (the neighbours'
        votes unless ``votes`` is False: a product with the corpus sample that a prediction skips when
        their weight is 0)."""
        out = {"asif": self.scores(image_vectors)}
        if self.head is not None:
            out.update(self.head.scores(logits, label_vectors))
        if self.votes is not None and votes:
            out["neighbours"] = self.votes.transform(image_vectors)
        return out

    def scores(self, image_vectors: np.ndarray) -> np.ndarray:
        """(n_images, n_labels) ASIF similarities."""
        return label_scores(self.image_proj, image_vectors, self.class_rel)

    def fused(self, image_vectors: np.ndarray, logits: Optional[np.ndarray] = None,
              label_vectors: Optional[np.ndarray] = None):
        """(fused scores, probabilities, the signals used) for a batch of inputs."""
        used = self.signals_used(logits=logits is not None, label_vectors=label_vectors is not None)
        sig = self.signals(image_vectors, logits, label_vectors, votes="neighbours" in used)
        fused = fuse({s: sig[s] for s in used}, self.weights)
        key = "+".join(sorted(used))
        if key not in self.temperatures:
            raise InputError(f"expected a temperature for the signals {key!r}, got temperatures for "
                             f"{sorted(self.temperatures)}")
        return fused, softmax_rows(fused, self.temperatures[key](len(self.labels))), used

    def predict(self, image_vectors: np.ndarray, k: int = 5, *, logits: Optional[np.ndarray] = None,
                label_vectors: Optional[np.ndarray] = None, abstain: Optional[float] = None) -> List[Prediction]:
        """Top-k labels of each input, with probabilities. ``logits``: the image network's classifier
        logits for the inputs (the tree and bridge signals), or ``label_vectors`` (the bridge only);
        ``abstain``: a top probability below it answers "none of these" (``Prediction.abstained``)."""
        if k < 1:
            raise InputError(f"expected k >= 1, got {k}")
        if abstain is not None and not 0.0 <= abstain <= 1.0:
            raise InputError(f"expected an abstention threshold between 0 and 1 (a probability), got {abstain}")
        scores, prob, _ = self.fused(image_vectors, logits, label_vectors)
        dense = self.image_proj.dense(image_vectors) @ self.class_dense.T
        out = []
        for row, d, pr in zip(scores, dense, prob):
            ids, s, _ = topk_with_ties(row, k, lambda c, d=d: d[c])
            out.append(Prediction([self.labels[i] for i in ids], s.tolist(), pr[ids].tolist(),
                                  abstain is not None and float(pr[ids[0]]) < abstain))
        return out


def accuracy(predictions: Sequence[Prediction], truth: Sequence[Optional[str]], k: int) -> Optional[float]:
    """Top-k accuracy over the items that have a true label (None when none has)."""
    pairs = [(p, t) for p, t in zip(predictions, truth) if t is not None]
    if not pairs:
        return None
    return float(np.mean([t in p.labels[:k] for p, t in pairs]))
