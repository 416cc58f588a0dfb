"""How the top k anchors of each input are found: a small registry of exact and approximate engines.

Every engine turns prepared inputs into ASIF rows (retrieval/core/relative.py) against the same prepared
anchors; they differ only in speed and, for ties and ``hnsw``, in which anchors they keep:

* ``numpy``: a dense similarity block and a partition; ties at the k-th keep the lowest anchor number.
* ``heap``: a dense block and a one-pass heap per row (retrieval/core/topk.py), a thread per core; the
  same ties as numpy.
* ``faiss``: FAISS's exact flat search (ties in FAISS's order; measured slower here, kept for comparison).
* ``torch``: the GEMM and ``torch.topk`` on a device (a CUDA GPU when there is one; ties in torch's order).
* ``hnsw``: approximate, an HNSW graph over the anchors (FAISS, M=32, efSearch=ef) for anchor sets in the
  millions; its recall is measured by scripts/bench_relativise.py.
* ``auto``: heap from HEAP_MIN_ANCHORS anchors, where selection starts to cost more than the GEMM.
"""

from __future__ import annotations

import os
from typing import Callable, List

import numpy as np
import scipy.sparse as sp

from retrieval.core.relative import BLOCK, asif_topk, asif_weights
from retrieval.errors import InputError

SELECTS = ("auto", "numpy", "heap", "faiss", "torch", "hnsw")
HEAP_MIN_ANCHORS = 4096
# Heap path: each core takes HEAP_BLOCK rows at a time and walks the anchors HEAP_COLS at a time,
# one single-threaded GEMM into a 4 MB buffer (its L2 cache) then the serial heap kernel over it.
# Measured (scripts/bench_relativise.py): a 2-thread GEMM followed by a 2-thread numba selection
# lost 20-40% to the two thread pools spinning against each other and to re-reading 128 MB blocks
# from memory; a thread per core keeps both the cores and the caches busy with one thing.
HEAP_BLOCK, HEAP_COLS = 1024, 1024

Prepare = Callable[[np.ndarray], np.ndarray]


class NumpyTopK:
    def __init__(self, anchors: np.ndarray, k: int, p: float, *, ef: int = 256, device: str = "cpu"):
        self.anchors, self.k, self.p = anchors, k, p

    def __call__(self, x: np.ndarray, prepare: Prepare, block: int) -> List[sp.csr_matrix]:
        return [asif_topk(prepare(x[i:i + block]) @ self.anchors.T, self.k, self.p) for i in range(0, len(x), block)]


class HeapTopK(NumpyTopK):
    """Exact top-k by a thread per core over blocks of rows (see HEAP_BLOCK)."""

    def __call__(self, x: np.ndarray, prepare: Prepare, block: int) -> List[sp.csr_matrix]:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        from retrieval.core.topk import TopK

        m = len(self.anchors)

        def one(i: int) -> sp.csr_matrix:
            xb = np.ascontiguousarray(prepare(x[i:i + HEAP_BLOCK]))
            top, buf = TopK(len(xb), self.k), np.empty((len(xb), HEAP_COLS), np.float32)
            for c in range(0, m, HEAP_COLS):
                cols = self.anchors[c:c + HEAP_COLS]
                if len(cols) == HEAP_COLS:
                    np.matmul(xb, cols.T, out=buf)
                    top.push(buf, c, serial=True)
                else:
                    top.push(xb @ cols.T, c, serial=True)
            idx, vals = top.result()
            return asif_weights(idx, vals, m, self.p)

        starts = range(0, len(x), HEAP_BLOCK)
        workers = min(len(starts), os.cpu_count() or 1)
        if workers <= 1:  # one block (a query, a small batch): BLAS may use its own threads
            return [one(i) for i in starts]
        # BLAS at one thread for the duration: the parallelism is ours, one block per core. The
        # limit is process-wide while it lasts (threadpoolctl), so it is held only inside this call.
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, starts))


class FaissTopK(NumpyTopK):
    """FAISS's exact flat search fuses the GEMM with a per-row heap of the k best, so the similarity
    block never has to be scanned again."""

    def __init__(self, anchors: np.ndarray, k: int, p: float, *, ef: int = 256, device: str = "cpu"):
        super().__init__(anchors, k, p)
        faiss = _faiss(self.name())
        self.index = self._index(faiss, anchors.shape[1], ef)
        self.index.add(np.ascontiguousarray(anchors, np.float32))

    @staticmethod
    def name() -> str:
        return "faiss"

    def _index(self, faiss, dim: int, ef: int):
        return faiss.IndexFlatIP(dim)

    def __call__(self, x: np.ndarray, prepare: Prepare, block: int) -> List[sp.csr_matrix]:
        out = []
        for i in range(0, len(x), block):
            sims, cols = self.index.search(np.ascontiguousarray(prepare(x[i:i + block]), np.float32), self.k)
            order = np.argsort(cols, axis=1, kind="stable")  # CSR wants ascending anchor numbers
            out.append(asif_weights(np.take_along_axis(cols, order, 1), np.take_along_axis(sims, order, 1),
                                    len(self.anchors), self.p))
        return out


class HnswTopK(FaissTopK):
    @staticmethod
    def name() -> str:
        return "hnsw"

    def _index(self, faiss, dim: int, ef: int):
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = max(int(ef), int(self.k))
        return index


class TorchTopK(NumpyTopK):
    def __init__(self, anchors: np.ndarray, k: int, p: float, *, ef: int = 256, device: str = "cpu"):
        import torch

        super().__init__(anchors, k, p)
        self.device = device
        self.torch_anchors = torch.from_numpy(np.ascontiguousarray(anchors)).to(device)

    def __call__(self, x: np.ndarray, prepare: Prepare, block: int) -> List[sp.csr_matrix]:
        import torch

        out = []
        for i in range(0, len(x), block):
            xb = torch.from_numpy(np.ascontiguousarray(prepare(x[i:i + block]))).to(self.device)
            vals, cols = torch.topk(xb @ self.torch_anchors.T, self.k, dim=1)
            cols, order = torch.sort(cols, dim=1)
            vals = torch.gather(vals, 1, order)
            out.append(asif_weights(cols.cpu().numpy(), vals.cpu().numpy(), len(self.anchors), self.p))
        return out


ENGINES = {"numpy": NumpyTopK, "heap": HeapTopK, "faiss": FaissTopK, "torch": TorchTopK, "hnsw": HnswTopK}


def _faiss(select: str):
    try:
        import faiss
    except ImportError as exc:
        raise InputError(f"select={select!r} needs faiss; pip install faiss-cpu") from exc
    return faiss


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(select: str, n_anchors: int, k: int) -> str:
    """The engine ``select`` means for ``n_anchors`` anchors: "auto" becomes heap or numpy; numpy when
    every anchor is kept (nothing to select)."""
    if select not in SELECTS:
        raise InputError(f"expected select in {SELECTS}, got {select!r}")
    if select in ("heap", "auto"):
        if k >= n_anchors or (select == "auto" and n_anchors < HEAP_MIN_ANCHORS):
            return "numpy"
        if not _has_numba():
            if select == "heap":
                raise InputError("select='heap' needs numba; pip install numba")
            return "numpy"
    return select


def engine(select: str, anchors: np.ndarray, k: int, p: float, *, ef: int = 256, device: str = "cpu"):
    """The top-k engine ``select`` names, fitted on prepared ``anchors``."""
    return ENGINES[resolve(select, len(anchors), k)](anchors, k, p, ef=ef, device=device)


__all__ = ["BLOCK", "ENGINES", "HEAP_BLOCK", "HEAP_COLS", "HEAP_MIN_ANCHORS", "SELECTS", "engine", "resolve"]
