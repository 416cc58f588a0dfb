"""What an image network's own classifier head tells classification, without any anchor.

Two signals, each an (inputs, labels) score matrix computed from the head's logits:

* **tree**: the head's probability mass on the ImageNet classes that WordNet places below what a
  label names, as a lift over the share of classes below it (:mod:`retrieval.encoders.wordnet`).
  Strong where labels are categories of things the network knows ("animals", "vehicles", "food");
  flat, and so silent, where WordNet places no class below any label (digits, emoji groups' names).
* **bridge**: the label bridge of search: the input's label vector (its class names' embeddings
  weighted by probability, :func:`retrieval.encoders.labels.label_vectors`) against each label's
  prompt embedding, in the text encoder's space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from retrieval.core.calibration import softmax_rows
from retrieval.encoders.labels import DEFAULT_TEMPERATURE, class_vectors, imagenet_names, label_vectors
from retrieval.encoders.wordnet import imagenet_ids, load_wordnet, membership, tree_scores


@dataclass(frozen=True)
class ClassHead:
    """An image network's classifier head as classification uses it: its classes' WordNet ids (in
    the logits' order) and their names embedded by the collection's text encoder (None: no bridge)."""
    ids: List[str]
    names: Optional[np.ndarray] = None

    @classmethod
    def of(cls, image_encoder, text_encoder=None) -> Optional["ClassHead"]:
        """The head of a packaged ImageNet network (``label_names`` of 1,000 classes), its names
        embedded when ``text_encoder`` is given; None for any other encoder."""
        names = getattr(image_encoder, "label_names", None)
        ids = imagenet_ids()
        if names is None or ids is None or len(names) != len(ids) or names != imagenet_names():
            return None
        return cls(ids, None if text_encoder is None else class_vectors(text_encoder, names))


class HeadSignals:
    """The head's signals for one label set: the tree's membership is worked out once."""

    def __init__(self, head: ClassHead, labels: Sequence[str], label_prompts: np.ndarray):
        """``label_prompts``: each label's prompt embedding (unit rows, the text encoder's space)."""
        self.head, self.prompts = head, np.asarray(label_prompts, np.float32)
        wn = load_wordnet()
        member = None if wn is None else membership(wn, labels, head.ids)
        # a tree no label reaches scores every label alike: it is left out rather than carried as zeros
        self.member = member if member is not None and member.any() else None
        self.covered = [] if self.member is None else [lab for lab, m in zip(labels, self.member) if m.any()]

    def available(self, *, logits: bool, label_vectors: bool) -> List[str]:
        """The signals these inputs allow: the tree needs logits, the bridge logits or label vectors."""
        out = ["tree"] if logits and self.member is not None else []
        return out + (["bridge"] if label_vectors or (logits and self.head.names is not None) else [])

    def scores(self, logits: Optional[np.ndarray] = None,
               label_vecs: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        out = {}
        if logits is not None and self.member is not None:
            out["tree"] = tree_scores(softmax_rows(logits, 1.0), self.member)
        if label_vecs is None and logits is not None and self.head.names is not None:
            label_vecs = label_vectors(logits, self.head.names, DEFAULT_TEMPERATURE)
        if label_vecs is not None:
            out["bridge"] = np.asarray(label_vecs, np.float64) @ self.prompts.T.astype(np.float64)
        return out
