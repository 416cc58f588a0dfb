"""The contract every search backend keeps; ``tests/test_index_conformance.py`` checks it for each.

An index holds vectors (CSR relative vectors or dense rows) under row ids 0..n-1, in the order they
were added, and answers inner-product top-k queries with the engine's tie rule
(:func:`retrieval.core.ranking.rank_candidates`): equal scores within ``TIE_EPS`` are ordered by the
``secondary`` score, then by id. Every backend returns the exact backend's answer (FAISS
approximations aside, which the conformance tests bound).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from retrieval.errors import InputError

TIE_MARGIN = 256  # candidates beyond k that a candidate-list backend (faiss, torch) re-ranks for ties
# Queries scored at once by the brute-force backends: bounds the (queries x items) score block.
QUERY_BLOCK = 256


@dataclass
class Hits:
    """One query's ranked results: row ids into the indexed vectors, primary and secondary scores."""
    ids: np.ndarray
    scores: np.ndarray
    secondary: np.ndarray


Secondary = Optional[Callable[[int, np.ndarray], np.ndarray]]  # (query row, candidate ids) -> scores


def no_hits(n_queries: int) -> List[Hits]:
    """What a search of an empty index returns: one empty result per query."""
    return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)) for _ in range(n_queries)]


def check_allowed(allowed, n: int) -> Optional[np.ndarray]:
    """``allowed`` as ascending unique int64 row ids within 0..n-1 (None: every row)."""
    if allowed is None:
        return None
    ids = np.asarray(allowed, np.int64)
    # what a filter makes is already ascending and unique: checked in one pass, where np.unique hashed
    # a tenth of a million rows for every search (tens of ms a query on these cores)
    if ids.ndim != 1 or (ids.size > 1 and not (ids[1:] > ids[:-1]).all()):
        ids = np.unique(ids)
    if ids.size and (ids[0] < 0 or ids[-1] >= n):
        raise InputError(f"expected allowed row ids within 0..{n - 1}, got {ids[0]}..{ids[-1]}")
    return ids


def own_rows(x) -> sp.csr_matrix:
    """Sparse rows as float32 CSR with sorted indices and no stored zeros, safe to keep. scipy's
    conversions share ``indices`` with their input, so sorting them in place would scramble the
    caller's matrix: a copy is made whenever anything must change."""
    x = sp.csr_matrix(x, dtype=np.float32)
    if x.has_sorted_indices and not np.any(x.data == 0):
        return x
    x = x.copy()
    x.eliminate_zeros()
    x.sort_indices()
    return x


def as_matrix(x):
    """Vectors as float32 CSR (if sparse) or a 2-D float32 array; anything else is refused."""
    if sp.issparse(x):
        return sp.csr_matrix(x, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"expected a 2-D array of vectors, got shape {x.shape}")
    return x


class Index(abc.ABC):
    """A search backend. ``name`` is how a manifest's index spec names it (``{"backend": name, ...}``)."""

    name = ""

    def __init__(self):
        self.dim: Optional[int] = None

    def _check(self, x) -> None:
        if self.dim is not None and x.shape[1] != self.dim:
            raise InputError(f"expected vectors of width {self.dim} for this index, got width {x.shape[1]}")

    @abc.abstractmethod
    def add(self, vectors) -> "Index":
        """Append vectors; their row ids continue after the existing ones. Returns self."""

    @abc.abstractmethod
    def search(self, queries, k: int, secondary: Secondary = None, allowed: Optional[np.ndarray] = None) -> List[Hits]:
        """One :class:`Hits` per query row: the k best rows (more when the k-th ties), best first.
        ``allowed`` (ascending row ids, e.g. a metadata filter's matches) restricts the search to those
        rows before the k best are cut, so k rows come back whenever k are allowed."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Rows indexed."""

    @abc.abstractmethod
    def save(self, folder: str, stem: str) -> List[str]:
        """Write what the backend needs beyond the collection's own vector files, named ``stem.*``
        in ``folder``; returns the file names (none for the brute-force backends)."""

    @abc.abstractmethod
    def load(self, folder: str, stem: str, vectors) -> "Index":
        """Replace this index's content with what :meth:`save` wrote. ``vectors`` are the vectors
        that were added, in order (memory-mapped where the collection stores them so): backends
        that write no files index them again; the others take from them only what their files do
        not hold (the item count, the rows to re-rank). Only called after the manifest's checksums
        were verified. Returns self."""

    def spec(self) -> Dict:
        """The manifest entry that :func:`retrieval.indexes.make_index` turns back into this index."""
        return {"backend": self.name}

    def search_approximately(self, setting) -> bool:
        """Answer with ``setting`` (a :class:`retrieval.indexes.heads.Approximate`, or None: exactly) where
        this backend and its size allow it, preparing what that reads now; whether it will. Exact
        backends never do (the inverted index can: retrieval/indexes/heads.py)."""
        return False

    def approximate_spec(self) -> Optional[Dict]:
        """The setting this index answers with, when it answers approximately; else None."""
        return None
