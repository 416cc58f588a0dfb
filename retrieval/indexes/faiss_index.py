"""``faiss``: a FAISS index (factory string, default ``"Flat"``, inner product) over the densified
vectors, on GPU when the installed faiss sees one. Ties beyond its candidate list cannot be
re-ranked, so it asks FAISS for ``k + TIE_MARGIN`` candidates. With ``rerank=R`` it asks for R
times as many and scores them exactly against the stored vectors (which may be memory-mapped):
the candidate stage of a compressed index (IVF-PQ) followed by an exact re-rank."""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from retrieval.core.ranking import rank_candidates
from retrieval.errors import InputError
from retrieval.indexes.base import TIE_MARGIN, Hits, Index, Secondary, as_matrix, no_hits


class FaissIndex(Index):
    """A FAISS inner-product index built from a factory string (``"Flat"``, ``"HNSW32"``, …)."""

    name = "faiss"

    def __init__(self, factory: str = "Flat", use_gpu: Optional[bool] = None, params: str = "",
                 tie_margin: int = TIE_MARGIN, rerank: int = 0):
        super().__init__()
        self.factory, self.use_gpu, self.params, self._index = factory, use_gpu, params or "", None
        self.tie_margin = int(tie_margin)
        if not isinstance(rerank, (int, np.integer)) or rerank < 0:
            raise InputError(f"expected rerank as a whole number >= 0 (0 = off), got {rerank!r}")
        self.rerank = int(rerank)
        self._exact = None  # the exact vectors, kept only when re-ranking

    def _apply_params(self) -> None:
        """Search parameters such as ``"efSearch=128"`` or ``"nprobe=32"`` (comma separated)."""
        if self.params and self._index is not None:
            faiss = self._faiss()
            try:
                faiss.ParameterSpace().set_index_parameters(self._index, self.params)
            except RuntimeError as exc:
                raise InputError(f"expected FAISS search parameters for {self.factory!r} such as 'nprobe=32' "
                                 f"or 'efSearch=128', got {self.params!r}: {exc}") from exc

    @staticmethod
    def _faiss():
        try:
            import faiss
        except ImportError as exc:
            raise InputError("the 'faiss' backend needs faiss; pip install faiss-cpu (or faiss-gpu)") from exc
        return faiss

    def _dense(self, x) -> np.ndarray:
        x = x.toarray() if sp.issparse(x) else x
        return np.ascontiguousarray(x, dtype=np.float32)

    def _maybe_gpu(self, index):
        faiss = self._faiss()
        n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if self.use_gpu is False or n_gpus == 0:
            if self.use_gpu:
                raise InputError("use_gpu=True but the installed faiss sees no GPU; install faiss-gpu or drop use_gpu")
            return index
        return faiss.index_cpu_to_all_gpus(index)

    def add(self, vectors) -> "FaissIndex":
        faiss = self._faiss()
        x = self._dense(as_matrix(vectors))
        self._check(x)
        if self._index is None:
            self.dim = x.shape[1]
            try:
                cpu = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as exc:
                raise InputError(f"expected a FAISS factory string such as 'Flat' or 'HNSW32', got {self.factory!r}: {exc}") from exc
            if not cpu.is_trained:
                try:
                    cpu.train(x)
                except RuntimeError as exc:  # e.g. fewer vectors than an IVF or PQ has centroids
                    raise InputError(f"expected enough vectors to train FAISS index {self.factory!r}, got {len(x)}: "
                                     f"{str(exc).splitlines()[-1]}; pick a smaller factory or 'Flat'") from exc
            self._index = self._maybe_gpu(cpu)
            self._apply_params()
        self._index.add(x)
        if self.rerank:
            self._exact = x if self._exact is None else np.vstack([self._exact, x])
        return self

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def search(self, queries, k: int, secondary: Secondary = None) -> List[Hits]:
        q = self._dense(as_matrix(queries))
        self._check(q)
        if len(self) == 0:
            return no_hits(len(q))
        kk = min(len(self), (k + self.tie_margin) * max(1, self.rerank))
        scores, ids = self._index.search(q, kk)
        out = []
        for r in range(q.shape[0]):
            keep = ids[r] >= 0
            cand, cand_scores = ids[r][keep], scores[r][keep]
            if self.rerank:  # exact scores for the candidates (sorted ids: sequential reads of a memmap)
                cand = np.sort(cand)
                cand_scores = np.asarray(self._exact[cand], np.float32) @ q[r]
            sec = None if secondary is None else (lambda c, r=r: secondary(r, c))
            out.append(Hits(*rank_candidates(cand, cand_scores, k, sec)))
        return out

    def spec(self) -> Dict:
        extra = {"params": self.params} if self.params else {}
        if self.tie_margin != TIE_MARGIN:
            extra["tie_margin"] = self.tie_margin
        if self.rerank:
            extra["rerank"] = self.rerank
        return {"backend": self.name, "factory": self.factory, **extra}

    def save(self, folder: str, stem: str) -> List[str]:
        faiss = self._faiss()
        index = self._index
        if hasattr(faiss, "index_gpu_to_cpu") and type(index).__name__.startswith("Gpu"):
            index = faiss.index_gpu_to_cpu(index)
        fname = f"{stem}.faiss"
        faiss.write_index(index, os.path.join(folder, fname))
        return [fname]

    def load(self, folder: str, stem: str, vectors) -> "FaissIndex":
        # Only called after the collection's manifest and checksums were verified.
        faiss = self._faiss()
        cpu = faiss.read_index(os.path.join(folder, f"{stem}.faiss"))
        self.dim, self._index = cpu.d, self._maybe_gpu(cpu)
        self._apply_params()
        if self.rerank:
            if vectors is None or getattr(vectors, "shape", (0,))[0] != cpu.ntotal:
                raise InputError(f"expected the {cpu.ntotal} exact vectors to re-rank with (rerank={self.rerank}), "
                                 f"got {None if vectors is None else getattr(vectors, 'shape', '?')}")
            self._exact = vectors if not sp.issparse(vectors) else self._dense(vectors)
        return self
