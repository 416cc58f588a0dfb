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

from retrieval.core.projector import RelativeProjector, without_background
from retrieval.core.ranking import topk_with_ties
from retrieval.encoders.base import Encoder, l2_normalise
from retrieval.errors import InputError

DEFAULT_TEMPLATES = ("a photo of a {}", "an emoji of {}", "an image of {}")

# Below this many items a corpus's mean is mostly its few items' own classes, and centring on it
# would remove what tells them apart: the anchors' mean is used instead. A judgement, not a fit: the
# suites' corpora (5,000 MNIST digits, 1,758 Twemoji drawings) are far above it.
MIN_CORPUS = 100
# Classification's own whitening: none, whatever the collection was built with. Chosen on validation
# folds in two domains (emoji groups and subgroups on the anchor concepts' folds, MNIST's first half:
# mean top-1 0.377 without against 0.358 with lambda 9, both without the bank; 0.399 and 0.369 with
# it; results/experiments/classify_validation.md); whitening was chosen for retrieval, on its folds.
CLASSIFY_WHITEN = 0.0


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


class ZeroShotClassifier:
    def __init__(self, labels: Sequence[str], templates: Sequence[str], *, text_encoder: Encoder,
                 text_anchors: np.ndarray, image_anchors: np.ndarray, projector_params: Dict, style=None,
                 use_background: bool = True, corpus=None,
                 whiten: Optional[float] = None):
        """``corpus``: vectors of the corpus the inputs come from (a collection's items), or their
        CorpusMean: with at least MIN_CORPUS of them, inputs are centred on their mean instead of on
        the image anchors' mean, which on inputs of another domain than the anchors lifts top-1 (results/digits,
        results/emoji-groups). None or fewer: the anchors' mean, as before. Either way an input's
        labels never depend on the other inputs classified with it. ``whiten``: the shrinkage
        whitening strength; None = CLASSIFY_WHITEN (off), whatever ``projector_params`` say.
        ``use_background``: keep the collection's background bank (its last ``background`` anchors)."""
        labels = [str(lab).strip() for lab in labels]
        n_bank = int(projector_params.get("background", 0) or 0)
        if n_bank and not use_background:
            # Asked to leave a collection's background bank (retrieval/build/background.py) out: the
            # bank's rows come last. By default classification keeps it: with inputs centred on their
            # corpus and no whitening, the bank raised mean validation top-1 over emoji groups,
            # subgroups and MNIST from 0.377 to 0.399 (results/experiments/classify_validation.md).
            text_anchors, image_anchors = text_anchors[:-n_bank], image_anchors[:-n_bank]
            projector_params = without_background(projector_params)
        projector_params = dict(projector_params, whiten=CLASSIFY_WHITEN if whiten is None else whiten)
        if not projector_params["whiten"]:
            del projector_params["whiten"]  # get_params's form: absent means off
        if not labels or any(not lab for lab in labels):
            raise InputError(f"expected non-empty labels, got {labels[:5]!r}")
        if len(set(labels)) != len(labels):
            dup = sorted({lab for lab in labels if labels.count(lab) > 1})
            raise InputError(f"expected distinct labels, got duplicates {dup[:5]}")
        if isinstance(templates, str) or not templates:
            raise InputError(f"expected a list of prompt templates, each with one {{}}, got {templates!r}")
        for t in templates:
            check_template(t)
        self.labels, self.templates = labels, list(templates)
        prompts = [t.format(lab) for lab in labels for t in self.templates]
        vecs = text_encoder.encode(prompts).reshape(len(labels), len(self.templates), -1)
        class_vecs = l2_normalise(vecs.mean(1))
        text_proj = RelativeProjector(**projector_params).fit(text_anchors)
        self.class_rel, self.class_dense = text_proj.transform(class_vecs), text_proj.dense(class_vecs)
        # style: the collection's normaliser of its items' modality (retrieval/core/style.py), if any
        self.image_proj = RelativeProjector(**projector_params, style=style).fit(image_anchors)
        # what the inputs were centred on, for reports: "corpus (N items)" or "anchors"
        self.centred_on = "anchors"
        centres = bool(projector_params.get("center") or projector_params.get("whiten"))
        n_corpus = 0 if corpus is None else corpus.count if isinstance(corpus, CorpusMean) else len(corpus)
        if n_corpus >= MIN_CORPUS and centres:
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
