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
from retrieval.indexes.base import TIE_MARGIN, Hits, Index, Secondary, as_matrix, check_allowed, no_hits

# A filter matching at most this many rows is scored row by row (exact and cheap); more go through
# FAISS's ID selector.
EXACT_FILTER_ROWS = 20_000


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

    def _stored(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` as the index scores them: the exact vectors when re-ranking, else rebuilt
        from the index (exact for Flat, HNSW-Flat and IVF-Flat; a compressed index's own code)."""
        if self._exact is not None:
            return np.asarray(self._exact[ids], np.float32)
        faiss = self._faiss()
        try:
            return self._index.reconstruct_batch(ids)
        except RuntimeError:  # an IVF index reconstructs through its direct map, made once
            faiss.extract_index_ivf(self._index).make_direct_map()
            return self._index.reconstruct_batch(ids)

    def _selector_params(self, allowed: np.ndarray):
        """Search parameters that keep only ``allowed`` rows, carrying the index's own nprobe / efSearch."""
        faiss = self._faiss()
        sel = faiss.IDSelectorBatch(allowed)
        try:
            ivf = faiss.extract_index_ivf(self._index)
            return faiss.SearchParametersIVF(sel=sel, nprobe=ivf.nprobe), sel
        except RuntimeError:
            pass
        hnsw = getattr(faiss.downcast_index(self._index), "hnsw", None)
        if hnsw is not None:
            return faiss.SearchParametersHNSW(sel=sel, efSearch=hnsw.efSearch), sel
        return faiss.SearchParameters(sel=sel), sel

    def _search_allowed(self, q: np.ndarray, k: int, secondary: Secondary, allowed: np.ndarray) -> List[Hits]:
        """A search among ``allowed`` rows. Few rows (or a Flat index): scored one by one, exactly as
        the index scores them. Many: FAISS's own ID selector, then any query left with fewer than k
        results (a selective filter on a graph index) is scored exactly like the few-rows case."""
        def exact_over_allowed(rows: List[int]) -> dict:
            vecs = self._stored(allowed)
            return {r: rank_candidates(allowed, vecs @ q[r], k, None if secondary is None else
                                       (lambda c, r=r: secondary(r, c))) for r in rows}

        want = min(k, allowed.size)
        if allowed.size <= EXACT_FILTER_ROWS or self.factory == "Flat" or type(self._index).__name__.startswith("Gpu"):
            done = exact_over_allowed(list(range(len(q))))
            return [Hits(*done[r]) for r in range(len(q))]
        params, _keep = self._selector_params(allowed)  # _keep: the selector must outlive the search
        kk = min(allowed.size, (k + self.tie_margin) * max(1, self.rerank))
        scores, ids = self._index.search(q, kk, params=params)
        out, short = {}, []
        for r in range(q.shape[0]):
            keep = ids[r] >= 0
            cand, cand_scores = ids[r][keep], scores[r][keep]
            if len(cand) < want:
                short.append(r)
                continue
            if self.rerank:
                cand = np.sort(cand)
                cand_scores = np.asarray(self._exact[cand], np.float32) @ q[r]
            sec = None if secondary is None else (lambda c, r=r: secondary(r, c))
            out[r] = rank_candidates(cand, cand_scores, k, sec)
        if short:
            out.update(exact_over_allowed(short))
        return [Hits(*out[r]) for r in range(len(q))]

    def search(self, queries, k: int, secondary: Secondary = None, allowed=None) -> List[Hits]:
        q = self._dense(as_matrix(queries))
        self._check(q)
        allowed = check_allowed(allowed, len(self))
        if len(self) == 0 or (allowed is not None and allowed.size == 0):
            return no_hits(len(q))
        if allowed is not None:
            return self._search_allowed(q, k, secondary, allowed)
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
