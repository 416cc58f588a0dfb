"""Search backends behind one short contract, all checked by one conformance test suite.

``add(vectors)``, ``search(queries, k, secondary=None) -> list[Hits]``, ``len()``,
``save(folder, stem) -> [file names]``, ``load(folder, stem, vectors)``.

* ``exact``: brute force. CSR vectors (relative) use a sparse product, dense vectors a GEMM. The
  default: it is exact and, at the sizes of this release, fast.
* ``inverted``: postings per anchor for sparse relative vectors (:mod:`retrieval.inverted`): exact,
  and its cost grows with the items that share an anchor with the query, not with the collection.
* ``torch``: brute force with torch on a device (a CUDA GPU when there is one); for GPUs without
  faiss-gpu. Like ``faiss``, it re-ranks ``k + TIE_MARGIN`` candidates.
* ``faiss``: a FAISS index (factory string, default ``"Flat"``, inner product) over the densified
  vectors, on GPU when the installed faiss sees one. Ties beyond its candidate list cannot be
  re-ranked, so it asks FAISS for ``k + TIE_MARGIN`` candidates. With ``rerank=R`` it asks for R
  times as many and scores them exactly against the stored vectors (which may be memory-mapped):
  the candidate stage of a compressed index (IVF-PQ) followed by an exact re-rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from .errors import InputError, UnknownNameError
from .ranking import rank_candidates, topk_with_ties

TIE_MARGIN = 256
# Queries scored at once by the exact backend: bounds the (queries x items) score block.
QUERY_BLOCK = 256


@dataclass
class Hits:
    """One query's ranked results: row ids into the indexed vectors, primary and secondary scores."""
    ids: np.ndarray
    scores: np.ndarray
    secondary: np.ndarray


Secondary = Optional[Callable[[int, np.ndarray], np.ndarray]]  # (query row, candidate ids) -> scores


def _as_matrix(x):
    if sp.issparse(x):
        return sp.csr_matrix(x, dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise InputError(f"expected a 2-D array of vectors, got shape {x.shape}")
    return x


class Index:
    name = ""

    def __init__(self):
        self.dim: Optional[int] = None

    def _check(self, x) -> None:
        if self.dim is not None and x.shape[1] != self.dim:
            raise InputError(f"expected vectors of width {self.dim} for this index, got width {x.shape[1]}")

    def __len__(self) -> int:
        raise NotImplementedError

    def spec(self) -> Dict:
        return {"backend": self.name}


class ExactIndex(Index):
    """Exact inner-product search over CSR or dense vectors."""

    name = "exact"

    def __init__(self):
        super().__init__()
        self._x = None

    def add(self, vectors) -> "ExactIndex":
        x = _as_matrix(vectors)
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
        q = _as_matrix(queries)
        self._check(q)
        if len(self) == 0:
            return np.zeros((q.shape[0], 0), np.float32)
        s = self._x @ q.T  # (items, queries): sparse x sparse stays sparse, densified below
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        return np.ascontiguousarray(s.T, dtype=np.float32)

    def search(self, queries, k: int, secondary: Secondary = None) -> List[Hits]:
        q = _as_matrix(queries)
        out: List[Hits] = []
        for start in range(0, q.shape[0], QUERY_BLOCK):
            block = self.scores(q[start:start + QUERY_BLOCK])
            for j, row in enumerate(block):
                sec = None if secondary is None else (lambda c, r=start + j: secondary(r, c))
                out.append(Hits(*topk_with_ties(row, k, sec)))
        return out

    def save(self, folder: str, stem: str) -> List[str]:
        return []  # vectors live in the collection's Parquet files; nothing else to write

    def load(self, folder: str, stem: str, vectors) -> "ExactIndex":
        self.__init__()
        return self.add(vectors)


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
        x = self._dense(_as_matrix(vectors))
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
        q = self._dense(_as_matrix(queries))
        self._check(q)
        if len(self) == 0:
            return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)) for _ in q]
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
        x = _as_matrix(vectors)
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

                x = sp.vstack([sp.csr_matrix(p) for p in self._parts], format="csr")
                with warnings.catch_warnings():  # "sparse CSR support is in beta": it is used for one product
                    warnings.simplefilter("ignore", UserWarning)
                    self._x = torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                                      torch.from_numpy(x.indices.astype(np.int64)),
                                                      torch.from_numpy(x.data.astype(np.float32)), size=x.shape,
                                                      device=self.device, check_invariants=True)
            else:
                self._x = torch.from_numpy(np.vstack(self._parts)).to(self.device)
        return self._x

    def search(self, queries, k: int, secondary: Secondary = None) -> List[Hits]:
        q = _as_matrix(queries)
        self._check(q)
        if self._n == 0:
            return [Hits(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)) for _ in range(q.shape[0])]
        torch, x = self._torch, self._tensor()
        kk = min(self._n, k + TIE_MARGIN)
        out: List[Hits] = []
        for start in range(0, q.shape[0], QUERY_BLOCK):
            block = q[start:start + QUERY_BLOCK]
            qd = torch.from_numpy(np.ascontiguousarray(block.toarray() if sp.issparse(block) else block)).to(self.device)
            scores = torch.sparse.mm(x, qd.T) if x.layout != torch.strided else x @ qd.T  # (items, queries)
            vals, ids = torch.topk(scores, kk, dim=0)
            vals, ids = vals.T.cpu().numpy(), ids.T.cpu().numpy()
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


from .inverted import InvertedIndex  # noqa: E402  (it imports Hits from here)

BACKENDS = {"exact": ExactIndex, "faiss": FaissIndex, "inverted": InvertedIndex, "torch": TorchIndex}


def make_index(spec: Dict) -> Index:
    """Build an empty index from its manifest spec, e.g. ``{"backend": "faiss", "factory": "Flat"}``."""
    backend = spec.get("backend")
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown index backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "faiss":
        return FaissIndex(spec.get("factory", "Flat"), spec.get("use_gpu"), spec.get("params", ""),
                          spec.get("tie_margin", TIE_MARGIN), spec.get("rerank", 0))
    if backend == "inverted":
        return InvertedIndex(spec.get("dtype", "float16"), items=spec.get("items"))
    if backend == "torch":
        return TorchIndex(spec.get("device"))
    return ExactIndex()
