"""Anchors drawn several ways: merge the views of one concept and learn what a change of style looks like.

An anchor table may give a concept several media files (the same emoji drawn by Noto and by
OpenMoji, say), marked by a shared ``concept`` column. Two things are learned from such views:

* a *prototype* per concept: the mean of its unit-length views, which depends less on any one
  drawing style than a single view does;
* a *style normaliser*: within-class covariance normalisation (WCCN, Hatch et al., 2006). The
  differences between views of one concept span the directions in which style moves an
  embedding; whitening by their covariance shrinks those directions, so similarities between a
  corpus image in yet another style and the anchors depend more on what is drawn than on how.

Both are fitted on the anchors alone, never on the corpus. On the emoji-xstyle suite (Noto,
OpenMoji, Fluent Emoji, EmojiOne and EmojiOne v1 views of the anchor concepts, Twemoji corpus of
other concepts) they
raise unseen text -> image recall; see results/emoji-xstyle. Concepts may have different numbers
of views; one with a single view adds nothing to the normaliser and is its own prototype. A set without repeated concepts is used as
before: no prototype, no normaliser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.core.step import Step
from retrieval.core.whiten import shrunk_inverse_sqrt
from retrieval.errors import InputError

DEFAULT_LAMBDA = 1.0  # the best of 0.3, 1 and 3 on the emoji-xstyle validation folds (all within noise)


def _unit(x: np.ndarray) -> np.ndarray:
    return l2_normalise(x, dtype=np.float64)


@dataclass
class StyleNormaliser:
    """``x -> unit(x) @ matrix``: a fixed linear map applied to one modality's embeddings before
    they are compared with the anchors (see :class:`retrieval.core.relative.RelativeProjector`)."""

    matrix: np.ndarray
    lam: float = DEFAULT_LAMBDA
    views: int = 0
    groups: int = 0

    @classmethod
    def fit(cls, vectors: np.ndarray, groups: Sequence, lam: float = DEFAULT_LAMBDA) -> "StyleNormaliser":
        """WCCN from the views of concepts with two or more views; ``groups[i]`` names row i's concept.

        The within-concept covariance is regularised by ``lam`` times its mean eigenvalue, so that
        directions no view pair varies in are scaled alike rather than blown up. Views that never
        differ (the same file twice) teach nothing: the normaliser is then the identity.
        """
        x = _unit(vectors)
        if len(groups) != len(x):
            raise InputError(f"expected one concept per anchor vector, got {len(groups)} concepts for {len(x)} vectors")
        if not np.isfinite(lam) or lam <= 0:
            raise InputError(f"expected a style regulariser lambda > 0, got {lam!r}")
        _, index, counts = _group(groups)
        multi = counts[index] >= 2
        if not multi.any():
            raise InputError("expected at least one concept with two or more views to learn a style normaliser, got none")
        means = np.zeros((len(counts), x.shape[1]))
        np.add.at(means, index, x)
        means /= counts[:, None]
        diff = (x - means[index])[multi]
        matrix = shrunk_inverse_sqrt(diff.T @ diff / len(diff), lam)
        return cls(matrix.astype(np.float32), float(lam), int(multi.sum()), int((counts >= 2).sum()))

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim != 2 or x.shape[1] != self.matrix.shape[0]:
            raise InputError(f"expected vectors of width {self.matrix.shape[0]} for the style normaliser, got shape {x.shape}")
        x = l2_normalise(x, dtype=None)
        return x @ self.matrix

    def meta(self) -> dict:
        return {"method": "wccn", "lambda": self.lam, "views": self.views, "concepts": self.groups}


class Restyle(Step):
    """The first step of a chain whose anchors were drawn several ways: unit rows through a fitted
    :class:`StyleNormaliser`, then unit again. The normaliser is learned from the anchors' views
    before the chain is fitted, and stored beside the collection (``style`` in its manifest), so the
    spec names the step only; :func:`retrieval.core.projector.projector_from_spec` hands it back."""

    name = "style"

    def __init__(self, normaliser: Optional[StyleNormaliser] = None):
        self.normaliser = normaliser

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.normaliser is None:
            raise InputError("expected the collection's style normaliser for its 'style' step, got none")
        return l2_normalise(self.normaliser.transform(x))


def _group(concepts: Sequence) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first row of each concept, in order of first appearance; each row's concept number in that
    order; rows per concept)."""
    _, first, inverse, counts = np.unique(np.asarray([str(c) for c in concepts]), return_index=True,
                                          return_inverse=True, return_counts=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()], counts[order]


def merge_views(concepts: Optional[Sequence[str]], media: np.ndarray, text: np.ndarray
                ) -> Tuple[List[int], np.ndarray, np.ndarray]:
    """Rows of one concept become one anchor: returns (the first row of each concept, in order of
    first appearance; media prototypes; text prototypes). Prototypes are means of unit vectors, so
    every view counts alike whatever its norm."""
    if concepts is None:
        return list(range(len(media))), media, text
    first, index, _ = _group(concepts)
    out = []
    for x in (media, text):
        sums = np.zeros((len(first), x.shape[1]))
        np.add.at(sums, index, _unit(x))
        out.append(_unit(sums).astype(np.float32))
    return first.tolist(), out[0], out[1]


def fit_views(concepts: Sequence, media: np.ndarray, text: np.ndarray, lam: float = DEFAULT_LAMBDA):
    """(StyleNormaliser, first row of each concept, media prototypes, text prototypes): what a build
    does with an anchor table whose rows share concepts (the evaluation calls it too)."""
    style = StyleNormaliser.fit(media, concepts, lam)
    rows, med, txt = merge_views(concepts, media, text)
    return style, rows, med, txt
