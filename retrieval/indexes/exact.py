"""``exact``: brute force. CSR vectors (relative) use a sparse product, dense vectors a GEMM. The
default: it is exact and, at the sizes of this release, fast."""

from __future__ import annotations

from typing import List

import numpy as np
import scipy.sparse as sp

from retrieval.core.ranking import rank_candidates, topk_with_ties
from retrieval.indexes.base import QUERY_BLOCK, Hits, Index, Secondary, as_matrix, check_allowed


class ExactIndex(Index):
    """Exact inner-product search over CSR or dense vectors."""

    name = "exact"

    def __init__(self):
        super().__init__()
        self._x = None

    def add(self, vectors) -> "ExactIndex":
        x = as_matrix(vectors)
        self._check(x)
        self.dim = x.shape[1]
        if self._x is None:
            self._x = x
        elif sp.issparse(self._x) or sp.issparse(x):
            self._x = sp.vstack([sp.csr_matrix(self._x), sp.csr_matrix(x)], format="csr")
        else:
            self._x = np.vstack([self._x, x])
        return self

    def __len__(self) -> int:
        return 0 if self._x is None else self._x.shape[0]

    def scores(self, queries) -> np.ndarray:
        q = as_matrix(queries)
        self._check(q)
        if len(self) == 0:
            return np.zeros((q.shape[0], 0), np.float32)
        s = self._x @ q.T  # (items, queries): sparse x sparse stays sparse, densified below
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        return np.ascontiguousarray(s.T, dtype=np.float32)

    def search(self, queries, k: int, secondary: Secondary = None, allowed=None) -> List[Hits]:
        q = as_matrix(queries)
        allowed = check_allowed(allowed, len(self))
        out: List[Hits] = []
        for start in range(0, q.shape[0], QUERY_BLOCK):
            block = self.scores(q[start:start + QUERY_BLOCK])
            for j, row in enumerate(block):
                sec = None if secondary is None else (lambda c, r=start + j: secondary(r, c))
                if allowed is None:
                    out.append(Hits(*topk_with_ties(row, k, sec)))
                else:  # every allowed row is a candidate: the same ranking rule over them alone
                    out.append(Hits(*rank_candidates(allowed, row[allowed], k, sec)))
        return out

    def save(self, folder: str, stem: str) -> List[str]:
        return []  # vectors live in the collection's Parquet files; nothing else to write

    def load(self, folder: str, stem: str, vectors) -> "ExactIndex":
        self.__init__()
        return self.add(vectors)
