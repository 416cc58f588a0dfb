"""ASIF zero-shot classification: labels become prompts, prompts become relative vectors.

Each label is written into several prompt templates; the prompts' text embeddings are averaged per
class (prompt ensembling, as for CLIP) and relativised against the text anchors. An image is
relativised against the image anchors, and its class is the label whose relative vector it matches
best, ties broken by the dense relative cosine.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from retrieval.core.projector import Projector, Spec, fit_projector, is_blocks, spec_block, spec_without
from retrieval.core.ranking import topk_with_ties
from retrieval.encoders.base import Encoder, l2_normalise
from retrieval.errors import InputError

DEFAULT_TEMPLATES = ("a photo of a {}", "an emoji of {}", "an image of {}")

# Below this many items a corpus's mean is mostly its few items' own classes, and centring on it
# would remove what tells them apart: the anchors' mean is used instead. A judgement, not a fit: the
# suites' corpora (5,000 MNIST digits, 1,758 Twemoji drawings) are far above it.
MIN_CORPUS = 100


@dataclass(frozen=True)
class CorpusMean:
    """A corpus's mean, taken once (``core.relative.unit_mean`` of its vectors, after the style
    normaliser the classifier uses), and how many vectors it is the mean of: what a collection hands
    its classifiers so that each request does not read every item again."""
    mean: np.ndarray
    count: int


@dataclass
class Prediction:
    labels: List[str]
    scores: List[float]

    def to_dict(self) -> Dict:
        return {"labels": self.labels, "scores": [round(float(s), 6) for s in self.scores]}


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
    """Labels stripped; refused when empty or repeated."""
    labels = [str(lab).strip() for lab in labels]
    if not labels or any(not lab for lab in labels):
        raise InputError(f"expected non-empty labels, got {labels[:5]!r}")
    if len(set(labels)) != len(labels):
        dup = sorted({lab for lab in labels if labels.count(lab) > 1})
        raise InputError(f"expected distinct labels, got duplicates {dup[:5]}")
    return labels


def check_templates(templates: Sequence[str]) -> List[str]:
    if isinstance(templates, str) or not templates:
        raise InputError(f"expected a list of prompt templates, each with one {{}}, got {templates!r}")
    return [check_template(t) for t in templates]


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


class ZeroShotClassifier:
    def __init__(self, labels: Sequence[str], templates: Sequence[str], *, text_encoder: Encoder, image: Side,
                 text: Side, style=None, corpus=None, keep_whitening: bool = False, use_background: bool = True):
        """``image`` / ``text``: each side's spec and anchors (:class:`Side`); classification's variations
        are edits of those specs (:meth:`Side.edited`): the whitening left out unless ``keep_whitening``,
        the background bank kept unless ``use_background`` is False. ``style``: the collection's style
        normaliser, for a ``style`` step of the image side. ``corpus``: vectors of the corpus the inputs
        come from (a collection's items), or their CorpusMean: with at least MIN_CORPUS of them, inputs
        are centred on their mean instead of on the image anchors' mean, which on inputs of another
        domain than the anchors lifts top-1 (results/digits, results/emoji-groups). None or fewer: the
        anchors' mean. Either way an input's labels never depend on the other inputs classified with it."""
        self.labels, self.templates = check_labels(labels), check_templates(templates)
        edits = dict(keep_whitening=keep_whitening, use_background=use_background)
        prompts = [t.format(lab) for lab in self.labels for t in self.templates]
        vecs = text_encoder.encode(prompts).reshape(len(self.labels), len(self.templates), -1)
        class_vecs = l2_normalise(vecs.mean(1))
        text_proj = text.fit(text.edited(**edits))
        self.class_rel, self.class_dense = text_proj.transform(class_vecs), text_proj.dense(class_vecs)
        self.image_proj = image.fit(image.edited(**edits), style=style)
        # what the inputs were centred on, for reports: "corpus (N items)" or "anchors"
        self.centred_on = "anchors"
        n_corpus = 0 if corpus is None else corpus.count if isinstance(corpus, CorpusMean) else len(corpus)
        if n_corpus >= MIN_CORPUS and self.image_proj.centres:
            mean = corpus.mean if isinstance(corpus, CorpusMean) else self.image_proj.input_mean(corpus)
            self.image_proj = self.image_proj.centred_on(mean)
            self.centred_on = f"corpus ({n_corpus} items)"

    def scores(self, image_vectors: np.ndarray) -> np.ndarray:
        """(n_images, n_labels) ASIF similarities."""
        rel = self.image_proj.transform_rows(image_vectors)
        s = rel @ self.class_rel.T
        return np.asarray(s.toarray() if hasattr(s, "toarray") else s, np.float32)

    def predict(self, image_vectors: np.ndarray, k: int = 5) -> List[Prediction]:
        if k < 1:
            raise InputError(f"expected k >= 1, got {k}")
        scores = self.scores(image_vectors)
        dense = self.image_proj.dense(image_vectors) @ self.class_dense.T
        out = []
        for row, d in zip(scores, dense):
            ids, s, _ = topk_with_ties(row, k, lambda c, d=d: d[c])
            out.append(Prediction([self.labels[i] for i in ids], s.tolist()))
        return out


def accuracy(predictions: Sequence[Prediction], truth: Sequence[Optional[str]], k: int) -> Optional[float]:
    """Top-k accuracy over the items that have a true label (None when none has)."""
    pairs = [(p, t) for p, t in zip(predictions, truth) if t is not None]
    if not pairs:
        return None
    return float(np.mean([t in p.labels[:k] for p, t in pairs]))
