"""Row-wise top-k of a dense similarity block, fused into one pass (numba).

Selecting the k best of 100,000 similarities per row with ``np.argpartition`` (or FAISS's heaps)
costs more than computing them: the GEMM does ~768 flops an entry at d = 384, a partition several
passes over memory. Here each row keeps a size-k min-heap; almost every entry fails one comparison
against the heap's minimum and is never touched again. Rows run in parallel.

Ties are exact and batch-independent: the heap orders (value, -index), so among equal similarities
the lowest anchor number is kept, as :func:`retrieval.core.relative.asif_topk` does. Similarities are
computed and offered in column blocks (HEAP_COLS anchors at a time in the projector) so that each
block is read back while it is still in cache.
"""

from __future__ import annotations

import types

import numpy as np

try:  # prange is range to the serial compilation (and to Python, when numba is missing)
    from numba import prange
except ImportError:  # pragma: no cover - numba is a dependency; relative.py falls back without it
    prange = range
_chunk_max_jit = None  # compiled with the kernels (fastmath lets the max vectorise)

_KERNELS = {}


CHUNK = 16  # entries tested at once: one vectorised max decides whether any of them can enter the heap


def _chunk_max(row, j0):
    mx = row[j0]
    for j in range(j0 + 1, j0 + CHUNK):
        mx = max(mx, row[j])
    return mx


def _push_block(sims, offset, hv, hi):
    """Offer a block of columns (numbered from ``offset``) to each row's min-heap of size k.
    Columns arrive in increasing order, so an equal value never displaces a kept one: among ties
    the lowest column number stays. Almost every chunk of CHUNK entries is dismissed by its maximum
    alone (a SIMD reduction), once the heap holds good values. Compiled twice (see :func:`_kernel`)."""
    n, m = sims.shape
    k = hv.shape[1]
    for r in prange(n):
        vals, idx = hv[r], hi[r]
        row = sims[r]
        j0 = 0
        while j0 < m:
            j1 = min(j0 + CHUNK, m)
            if j1 - j0 == CHUNK and _chunk_max_jit(row, j0) <= vals[0]:
                j0 = j1
                continue
            for j in range(j0, j1):
                v = row[j]
                if v <= vals[0]:
                    continue
                pos = 0  # replace the minimum and sift down; heap order is (value, -index)
                while True:
                    child = 2 * pos + 1
                    if child >= k:
                        break
                    c2 = child + 1
                    if c2 < k and (vals[c2] < vals[child] or (vals[c2] == vals[child] and idx[c2] > idx[child])):
                        child = c2
                    if vals[child] > v or (vals[child] == v and idx[child] < offset + j):
                        break
                    vals[pos] = vals[child]
                    idx[pos] = idx[child]
                    pos = child
                vals[pos] = v
                idx[pos] = offset + j
            j0 = j1


def _kernel(serial: bool = False):
    """The heap kernel: rows in parallel over numba's threads, or ``serial`` on the calling thread
    with the GIL released, for callers that run one block per thread themselves (relative.py: a
    thread per core, each doing its own small GEMM and selection while the block is in its cache)."""
    global _chunk_max_jit
    if serial not in _KERNELS:
        from numba import njit

        if _chunk_max_jit is None:
            _chunk_max_jit = njit(nogil=True, fastmath=True, inline="always", cache=True)(_chunk_max)

        if serial:
            # A copy under its own name: numba's on-disk cache is keyed by the function's name
            # and signature, not its compile options, so one name would hand back either build.
            fn = types.FunctionType(_push_block.__code__, globals(), "_push_block_serial")
            fn.__qualname__ = "_push_block_serial"
            _KERNELS[serial] = njit(nogil=True, cache=True)(fn)
        else:
            _KERNELS[serial] = njit(parallel=True, cache=True)(_push_block)
    return _KERNELS[serial]


class TopK:
    """Running top-k of each row over column blocks: ``push(block, offset)`` then ``result()``."""

    def __init__(self, rows: int, k: int):
        self.vals = np.full((rows, k), -np.inf, np.float32)
        self.idx = np.full((rows, k), np.iinfo(np.int64).max, np.int64)

    def push(self, sims: np.ndarray, offset: int, *, serial: bool = False) -> None:
        _kernel(serial)(np.ascontiguousarray(sims, np.float32), offset, self.vals, self.idx)

    def result(self):
        """(column indices ascending, their values), two (rows, k) arrays."""
        order = np.argsort(self.idx, axis=1, kind="stable")
        return np.take_along_axis(self.idx, order, 1), np.take_along_axis(self.vals, order, 1)


def topk_rows(sims: np.ndarray, k: int):
    """(column indices ascending, their values) of each row's k largest entries, as two (n, k) arrays."""
    top = TopK(sims.shape[0], k)
    top.push(sims, 0)
    return top.result()
