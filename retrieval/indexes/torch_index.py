"""``torch``: brute force with torch on a device (a CUDA GPU when there is one), for GPUs without
faiss-gpu. Like ``faiss``, it re-ranks ``k + TIE_MARGIN`` candidates."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from retrieval.core.ranking import rank_candidates
from retrieval.indexes.base import QUERY_BLOCK, TIE_MARGIN, Hits, Index, Secondary, as_matrix, check_allowed, no_hits, own_rows


class TorchIndex(Index):
    """Exact inner-product search with torch on a device (CUDA when the installed faiss has no GPU):
    items as a sparse CSR (relative) or dense tensor; each query block's scores come from one
    product, then ``k + TIE_MARGIN`` candidates are re-ranked as every backend does."""

    name = "torch"

    def __init__(self, device: Optional[str] = None):
        super().__init__()
        import torch

        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._parts: List = []
        self._x = None
        self._n = 0

    def add(self, vectors) -> "TorchIndex":
        x = as_matrix(vectors)
        self._check(x)
        self.dim = x.shape[1]
        self._parts.append(x)
        self._n += x.shape[0]
        self._x = None  # rebuilt on the next search
        return self

    def __len__(self) -> int:
        return self._n

    def _tensor(self):
        if self._x is None:
            torch = self._torch
            if any(sp.issparse(p) for p in self._parts):
                import warnings

                x = sp.vstack([own_rows(p) for p in self._parts], format="csr")  # torch wants sorted indices
                with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used for one product
                    warnings.simplefilter("ignore", UserWarning)
                    self._x = torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                                      torch.from_numpy(x.indices.astype(np.int64)),
                                                      torch.from_numpy(x.data.astype(np.float32)), size=x.shape,
                                                      device=self.device, check_invariants=True)
            else:
                self._x = torch.from_numpy(np.vstack(self._parts)).to(self.device)
        return self._x

    def search(self, queries, k: int, secondary: Secondary = None, allowed=None) -> List[Hits]:
        q = as_matrix(queries)
        self._check(q)
        allowed = check_allowed(allowed, self._n)
        if self._n == 0 or (allowed is not None and allowed.size == 0):
            return no_hits(q.shape[0])
        torch, x = self._torch, self._tensor()
        rows = None if allowed is None else torch.from_numpy(allowed).to(self.device)
        kk = min(self._n if allowed is None else allowed.size, k + TIE_MARGIN)
        out: List[Hits] = []
        for start in range(0, q.shape[0], QUERY_BLOCK):
            block = q[start:start + QUERY_BLOCK]
            qd = torch.from_numpy(np.ascontiguousarray(block.toarray() if sp.issparse(block) else block)).to(self.device)
            scores = torch.sparse.mm(x, qd.T) if x.layout != torch.strided else x @ qd.T  # (items, queries)
            if rows is not None:  # only the allowed rows compete; positions map back to their ids
                scores = scores.index_select(0, rows)
            vals, ids = torch.topk(scores, kk, dim=0)
            vals, ids = vals.T.cpu().numpy(), ids.T.cpu().numpy()
            if allowed is not None:
                ids = allowed[ids]
            for j in range(len(vals)):
                sec = None if secondary is None else (lambda c, r=start + j: secondary(r, c))
                out.append(Hits(*rank_candidates(ids[j], vals[j], k, sec)))
        return out

    def spec(self) -> Dict:
        return {"backend": self.name}  # the device is chosen where the collection is opened

    def save(self, folder: str, stem: str) -> List[str]:
        return []  # vectors live in the collection's Parquet files

    def load(self, folder: str, stem: str, vectors) -> "TorchIndex":
        self.__init__(self.device)
        return self.add(vectors)
