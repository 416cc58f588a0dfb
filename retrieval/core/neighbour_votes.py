"""Neighbour votes: a classification signal from the corpus's own structure, in the input encoder's space.

The ASIF signal judges each input alone, through anchors that may be of another domain. The input's
encoder, though, is good in its own domain: pictures of one class lie near each other there. So each
corpus item is classified once (its ASIF probabilities over the labels), and an input's votes are its
nearest corpus items' probabilities, each weighted by its cosine to the input (corpus and inputs
centred on the corpus's mean first). A classifier adds the votes as one more signal
(``retrieval.api.classify``, weight chosen on validation folds). An item never votes for itself: a
corpus item at cosine 1 to the input (the same vector) is left out, so an item of the collection is
classified as a new picture would be. The votes depend only on the fitted corpus, never on the other
inputs of a batch.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.core.calibration import softmax_rows, standardise_rows
from retrieval.core.normalise import l2_normalise
from retrieval.core.topk import topk_rows
from retrieval.errors import InputError

# A cosine at or above this is the input itself (or an exact copy of it) in the corpus.
SELF = 1.0 - 1e-5

# Inputs compared with the corpus this many at a time: a block's cosines against a 4,096-item sample
# take about 100 MB (float64, then float32).
BLOCK = 2048


class CorpusNeighbours:
    """A corpus prepared for nearest-neighbour lookups: centred on its mean, rows unit, in float64.
    What every label set's votes share, so a collection prepares it once (``CorpusSample.neighbours``).

    >>> near = CorpusNeighbours(np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    >>> near.nearest(np.array([[2.0, 0.1]]), 1)[0].tolist()
    [[0]]
    """

    def __init__(self, corpus: np.ndarray):
        corpus = np.asarray(corpus, np.float32)
        if corpus.ndim != 2 or not len(corpus):
            raise InputError(f"expected a non-empty (n, dim) corpus, got shape {corpus.shape}")
        self.mean = corpus.mean(0)
        self.rows = l2_normalise(corpus - self.mean, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.rows)

    def nearest(self, vectors: np.ndarray, m: int):
        """(indices, cosines), each (n, m): every input's ``m`` nearest corpus rows but itself (a row at
        cosine 1 is the input, or an exact copy of it), ties to the lowest row (core.topk)."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.rows.shape[1]:
            raise InputError(f"expected vectors of width {self.rows.shape[1]} (the corpus's), got shape "
                             f"{vectors.shape}")
        parts = [self._nearest(vectors[i:i + BLOCK], m) for i in range(0, len(vectors), BLOCK)]
        if not parts:
            return np.zeros((0, m), np.intp), np.zeros((0, m), np.float32)
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def _nearest(self, block: np.ndarray, m: int):
        # cosines in float64 rounded to float32: a row's then do not depend on how many rows BLAS was
        # handed with it (its last bits do), so an input votes alike alone or in a batch
        sims = (l2_normalise(block - self.mean, dtype=np.float64) @ self.rows.T).astype(np.float32)
        # an input does not vote for itself: below any cosine, it is kept only if nothing else is, at weight 0
        sims[sims >= SELF] = -2.0
        return topk_rows(sims, m)


class NeighbourVotes:
    """``neighbours`` nearest corpus items vote for their labels with the probabilities the ASIF signal
    gives them (its standardised scores through a softmax at ``temperature``).

    >>> corpus = np.array([[1.0, 0.0, 0.0], [0.8, 0.3, 0.0], [0.0, 1.0, 0.0], [0.2, 0.9, 0.0], [0.0, 0.0, 1.0]])
    >>> scores = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [1.0, 1.0]])
    >>> votes = NeighbourVotes(neighbours=2).fit(corpus, scores).transform(np.array([[0.9, 0.1, 0.0]]))
    >>> votes.argmax(1).tolist()  # its two neighbours, the first two items, vote for the first label
    [0]
    """

    def __init__(self, neighbours: int = 10, temperature: float = 1.0):
        self.neighbours, self.temperature = int(neighbours), float(temperature)
        if self.neighbours < 1 or not self.temperature > 0:
            raise InputError(f"expected neighbours >= 1 and a temperature > 0, got {neighbours} and {temperature}")

    def fit(self, corpus, scores: np.ndarray) -> "NeighbourVotes":
        """``corpus``: (n, dim) input-encoder vectors, or a CorpusNeighbours of them; ``scores``: their
        (n, labels) ASIF scores."""
        near = corpus if isinstance(corpus, CorpusNeighbours) else CorpusNeighbours(corpus)
        scores = np.asarray(scores, np.float64)
        if scores.ndim != 2 or len(near) != len(scores) or len(near) <= self.neighbours:
            raise InputError(f"expected more than {self.neighbours} corpus vectors with one score row each, got "
                             f"{len(near)} vectors and scores of shape {scores.shape}")
        self.corpus_ = near
        self.probabilities_ = softmax_rows(standardise_rows(scores), self.temperature)
        return self

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """(n, labels) votes of ``vectors``' nearest corpus items."""
        if not hasattr(self, "corpus_"):
            raise InputError("expected NeighbourVotes to be fitted on a corpus first (fit), got an unfitted one")
        near, sims = self.corpus_.nearest(vectors, self.neighbours)
        weight = np.maximum(sims, 0.0).astype(np.float64)
        return np.einsum("nm,nml->nl", weight, self.probabilities_[near])

    def to_spec(self) -> Dict:
        return {"neighbours": self.neighbours, "temperature": self.temperature}
