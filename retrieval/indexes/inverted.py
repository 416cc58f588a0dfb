"""Exact search over sparse relative vectors with an inverted index over anchors.

An ASIF relative vector has one dimension per anchor and only k non-zeros. Stored by anchor
(postings: the items that keep that anchor, with their weights), a query's scores need only the
postings of its own k anchors: work proportional to the items that share an anchor with it, not to
the collection. Scores are accumulated in a dense per-thread buffer, then the k best are selected
among the touched items only.

Exactness. Items a query does not touch score exactly 0. When the k-th best touched score is above
0 (by more than the tie tolerance), no untouched item can enter the top k or tie with it, and the
candidates are the touched items scoring at least the k-th best (ties included). Otherwise (fewer
than k touched items, or negative scores) the buffer already holds every item's score and the
ordinary dense selection runs on it. Either way the candidates go through the same
:func:`retrieval.core.ranking.rank_candidates` as every backend, so the results are the exact backend's.

Dense queries. When a query's postings number at least the items (a million items with k = 256 of
1,758 anchors: some 37 million postings), nearly every item is touched: its scores are then added
into the zeroed buffer without marking touched items, float16 weights read through a 65,536-entry
table, and every item is a candidate. The sums are the same, in the same order (bit-identical:
tests/test_index_conformance.py), 2.2 x faster on that collection and 2.8 x at k = 64 (the record of
touched items costs a random access per posting; ``scripts/bench_inverted_dense.py``,
results/bench/inverted-dense.md).

Bounded queries. From 20,000 items on, where an item's row squared is at least the number of anchors
(a query like a row is dense), a dense query is first answered from part of its postings with bounds
on what the rest can add (:mod:`retrieval.indexes.bounded`): bit-identical again
(tested), 2.48 x faster at a million items (results/bench/inverted-bounded.md); filtered searches too.

Approximate queries. Set to (``approximate``: serve --approximate, ``search_approximately``), an
index with those rows answers a dense query from its heaviest anchors' heaviest postings and scores
the candidates exactly (:mod:`retrieval.indexes.heads`): at a million items recall@10 0.9965 against
this exact search, 3.8 x faster; with a filter allowing a tenth of the items, recall 1.0 and
2.7 x (results/bench/inverted-approximate.md). Off by default.

Storage: ``indptr`` (int64, anchors + 1), ``ids`` (int32), ``weights`` (float16 by default, or
float32): 6 bytes a stored entry with float16. Beside them, for the bounded search: the same
entries item by item (``rows_ptr`` int64, ``rows_anchors`` uint16 up to 65,536 anchors else int32,
``rows_weights``), each item's squared norm (``norms``, float32) and each anchor's weight range
(``ranges``, anchors x 2): 4 more bytes an entry with float16. A collection written before these
existed has no ``"bounds"`` in its index spec and is searched without them. With float16 the index
is exact for the weights it stores, which differ from float32 by at most 2^-11 relatively;
``dtype="float32"`` gives bit-for-bit the scores of the exact backend. Saved as ``.npy`` files (no pickle) that are memory-mapped
on load, so a collection larger than RAM is searched from the page cache.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp

from retrieval.core.ranking import TIE_EPS, rank_candidates, topk_with_ties
from retrieval.errors import InputError
from retrieval.indexes import bounded, heads
from retrieval.indexes.base import Hits, Index, check_allowed, no_hits, own_rows

DTYPES = ("float16", "float32")
INT32_MAX = np.iinfo(np.int32).max


def _kernels():
    """:mod:`retrieval.indexes.kernels`, imported when an inverted index is first searched (numba
    compiles its kernels then, or reads them from its cache), so that a machine without numba still
    imports this module."""
    try:
        from retrieval.indexes import kernels
    except ImportError as exc:
        raise InputError("the 'inverted' index backend needs numba; pip install numba") from exc
    return kernels


HALF_TABLE = (2.0 ** (np.arange(32) - 25)).astype(np.float32)  # 2^(e-25) for each float16 exponent e
NO_TABLE = np.zeros(0, np.float32)
HALF_VALUES = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
DENSE_AT = 1.0  # postings per item from which a query takes the dense path (module docstring)


class _Workspace:
    """Per-thread score buffer, touched-item stamps and list (sized to the index)."""

    def __init__(self, n: int):
        self.acc = np.zeros(n, np.float32)
        self.stamp = np.zeros(n, np.int32)  # 4 bytes: the random accesses are what costs
        self.touched = np.empty(n, np.int32)
        self.cand_ids = np.empty(n, np.int64)
        self.cand_scores = np.empty(n, np.float32)
        self.heap = np.empty(0, np.float32)
        self.tag = 0
        self._every = None
        self._bounded = None

    def new_tag(self) -> int:
        """A new query's stamp: items stamped with another are untouched by it."""
        self.tag += 1
        if self.tag == np.iinfo(np.int32).max:  # stamps would wrap: start over
            self.stamp[:] = 0
            self.tag = 1
        return self.tag

    def bounded(self) -> tuple:
        """A bounded search's workspaces (made once): (n, 2) partial scores and squared weights,
        (2, n) lower and upper bounds."""
        if self._bounded is None:
            n = len(self.acc)
            self._bounded = np.zeros((n, 2), np.float32), np.zeros((2, n), np.float32)
        return self._bounded

    def every(self) -> np.ndarray:
        """All item numbers, as the touched list of a dense query (made once)."""
        if self._every is None:
            self._every = np.arange(len(self.acc), dtype=np.int32)
        return self._every


class InvertedIndex(Index):
    """Postings per anchor; exact top-k with the engine's tie-break. See the module docstring."""

    name = "inverted"

    def __init__(self, dtype: str = "float16", threads: Optional[int] = None, items: Optional[int] = None,
                 bounds: bool = False, approximate=None):
        """``approximate``: None (exact, the default) or an :class:`retrieval.indexes.heads.Approximate`
        setting (or its spec), for dense queries on an index with the bounded search's rows."""
        if dtype not in DTYPES:
            raise InputError(f"expected an inverted index dtype in {DTYPES}, got {dtype!r}")
        super().__init__()
        self.dtype, self.threads, self._items, self._bounds_saved = dtype, threads, items, bounds
        self.n = 0
        self.indptr = self.ids = self.weights = None
        self.bounds: Optional[bounded.Bounds] = None  # the rows and bounds of a bounded search, if held
        self.approximate: Optional[heads.Approximate] = heads.Approximate.of(approximate)
        self._heads = None  # (entries an anchor, heads): made by search_approximately or the first approximate search
        self._heads_lock = threading.Lock()
        self._spares: List[_Workspace] = []
        self._spares_lock = threading.Lock()

    # ---- building -----------------------------------------------------------------------------
    def add(self, vectors) -> "InvertedIndex":
        """Append vectors (CSR or dense rows); their ids continue after the existing ones."""
        x = own_rows(vectors)
        self._check(x)
        if self.n + x.shape[0] > INT32_MAX:
            raise InputError(f"expected at most {INT32_MAX} items in one inverted index (int32 ids), "
                             f"got {self.n + x.shape[0]}; shard the collection")
        csc = x.tocsc()
        csc.sort_indices()
        new_ptr = csc.indptr.astype(np.int64)
        new_ids = (csc.indices.astype(np.int64) + self.n).astype(np.int32)
        new_w = csc.data.astype(self.dtype)
        if self.indptr is None:  # decided when the index is first filled; a part added later follows suit
            self.bounds = bounded.Bounds.of(x, new_ptr, new_w) if bounded.pays(*x.shape, x.nnz) else None
        elif self.bounds is not None:
            self.bounds = self.bounds.extend(bounded.Bounds.of(x, new_ptr, new_w))
        if self.indptr is None:
            self.indptr, self.ids, self.weights = new_ptr, new_ids, new_w
        else:  # merge per anchor: old postings first (smaller ids), then the new ones
            old_cnt, add_cnt = np.diff(self.indptr), np.diff(new_ptr)
            ptr = np.concatenate([[0], np.cumsum(old_cnt + add_cnt)]).astype(np.int64)
            ids = np.empty(ptr[-1], np.int32)
            w = np.empty(ptr[-1], self.dtype)
            pos_old = np.arange(len(self.ids)) - np.repeat(self.indptr[:-1], old_cnt) + np.repeat(ptr[:-1], old_cnt)
            pos_new = (np.arange(len(new_ids)) - np.repeat(new_ptr[:-1], add_cnt)
                       + np.repeat(ptr[:-1] + old_cnt, add_cnt))
            ids[pos_old], w[pos_old] = self.ids, self.weights
            ids[pos_new], w[pos_new] = new_ids, new_w
            self.indptr, self.ids, self.weights = ptr, ids, w
        self.dim, self.n = x.shape[1], self.n + x.shape[0]
        self._spares = []  # workspaces are sized to n
        self._heads = None
        return self

    def __len__(self) -> int:
        return self.n

    def memory_bytes(self) -> int:
        """Bytes held by the postings and the bounded search's rows, if any (what a larger-than-RAM
        collection maps from disk)."""
        if self.indptr is None:
            return 0
        return int(sum(a.nbytes for a in self._parts().values()))

    def spec(self) -> Dict:
        return dict({"backend": self.name, "dtype": self.dtype, "items": self.n},
                    **({"bounds": True} if self.bounds is not None else {}),
                    **({"approximate": self.approximate.to_spec()} if self.approximate is not None else {}))

    # ---- search -------------------------------------------------------------------------------
    @contextmanager
    def _workspace(self):
        """A workspace no other thread is using, returned to the spares afterwards. Kept by the index,
        not by the thread: a batch's threads are new each time, and at a million items a new
        workspace (28 MB, page-faulted in) cost more than a dense query's search."""
        with self._spares_lock:
            ws = self._spares.pop() if self._spares else None
        if ws is None or len(ws.acc) != self.n:
            ws = _Workspace(self.n)
        try:
            yield ws
        finally:
            with self._spares_lock:
                self._spares.append(ws)

    def _accumulate(self, ws: _Workspace, q_idx: np.ndarray, q_val: np.ndarray) -> tuple:
        """(the touched item numbers' list, how many): into ``ws.acc``, by the dense path when the
        query's postings are as many as the items."""
        half = self.weights.dtype == np.float16
        if self._dense(q_idx):
            _kernels().accumulate_all(*self._postings(), q_idx, q_val, ws.acc)
            return ws.every(), self.n
        ws.new_tag()
        weights, lut = (self.weights.view(np.uint16), HALF_TABLE) if half else (self.weights, NO_TABLE)
        t = _kernels().accumulate(self.indptr, self.ids, weights, lut, q_idx, q_val, ws.acc, ws.stamp, ws.tag,
                                  ws.touched)
        return ws.touched, t

    def _dense(self, q_idx: np.ndarray) -> bool:
        """Whether a query's postings are as many as the items (module docstring: dense queries)."""
        return bool(np.sum(self.indptr[q_idx + 1] - self.indptr[q_idx]) >= DENSE_AT * self.n)

    def _postings(self) -> tuple:
        """(indptr, ids, weights, decode table): float16 weights as their bits, with every bit
        pattern's value."""
        if self.weights.dtype == np.float16:
            return self.indptr, self.ids, self.weights.view(np.uint16), HALF_VALUES
        return self.indptr, self.ids, self.weights, NO_TABLE

    def _bounded(self, ws: _Workspace, q_idx: np.ndarray, q_val: np.ndarray, k: int, secondary,
                 mask: Optional[np.ndarray] = None) -> Optional[tuple]:
        """A dense query's answer (among the rows ``mask`` marks, if given) from part of its postings
        (:mod:`retrieval.indexes.bounded`), or None."""
        if k == 0 or self.bounds is None or self.n < bounded.MIN_ITEMS or not self._dense(q_idx):
            return None
        found = bounded.search(self._postings(), self.bounds, q_idx, q_val, k, *ws.bounded(), ws.cand_ids,
                               mask)
        return None if found is None else rank_candidates(found[0], found[1], k, secondary)

    def _approximate(self, ws: _Workspace, q_idx: np.ndarray, q_val: np.ndarray, k: int, secondary,
                     mask: Optional[np.ndarray] = None) -> Optional[tuple]:
        """A dense query's answer (among the rows ``mask`` marks, if given) from its heaviest anchors'
        heads (:mod:`retrieval.indexes.heads`) when the index is set to search approximately, else None."""
        if k == 0 or not self.approximates() or not self._dense(q_idx):
            return None
        half = self.weights.dtype == np.float16
        found = heads.search(self._made_heads(), self.bounds, self._postings()[3], q_idx, q_val, k, self.approximate,
                             ws, HALF_TABLE if half else NO_TABLE, mask)
        return None if found is None else rank_candidates(found[0], found[1], k, secondary)

    def approximates(self) -> bool:
        """Whether dense queries are answered approximately: so set, with the bounded search's rows,
        from MIN_ITEMS items (smaller indexes are searched exactly)."""
        return self.approximate is not None and self.bounds is not None and self.n >= bounded.MIN_ITEMS

    def search_approximately(self, setting) -> bool:
        """Set (or, with None, clear) the approximate setting; the heads are made now, not on the first
        query, where it :meth:`approximates`; whether it does."""
        self.approximate = heads.Approximate.of(setting)
        if self.approximates():
            self._made_heads()
        return self.approximates()

    def approximate_spec(self) -> Optional[Dict]:
        return self.approximate.to_spec() if self.approximates() else None

    def _made_heads(self) -> heads.Heads:
        """The heads for the current setting's size, made once (a search that comes meanwhile waits):
        at a million items about 2 s and, at the default share, up to 0.2 GB."""
        size = heads.head_size(self.approximate, self.n)
        with self._heads_lock:
            if self._heads is None or self._heads[0] != size:
                self._heads = size, heads.Heads.of(self.indptr, self.ids, self.weights, size)
            return self._heads[1]

    def _one(self, q_idx: np.ndarray, q_val: np.ndarray, k: int, secondary) -> tuple:
        with self._workspace() as ws:
            k = min(k, self.n)
            answer = self._approximate(ws, q_idx, q_val, k, secondary)
            if answer is not None:
                return answer
            answer = self._bounded(ws, q_idx, q_val, k, secondary)
            if answer is not None:
                return answer
            touched_list, t = self._accumulate(ws, q_idx, q_val)
            if t >= k and t > 0:
                if len(ws.heap) < k:
                    ws.heap = np.empty(k, np.float32)
                kth, n_cand = _kernels().select(ws.acc, touched_list, t, k, np.float32(TIE_EPS), ws.heap,
                                                   ws.cand_ids, ws.cand_scores)
                if t == self.n or kth > TIE_EPS:  # untouched items (score 0), if any, can neither enter nor tie
                    return rank_candidates(ws.cand_ids[:n_cand].copy(), ws.cand_scores[:n_cand].copy(), k, secondary)
            touched = touched_list[:t]
            full = np.zeros(self.n, np.float32)  # the slow, always-correct path: every score is known
            full[touched] = ws.acc[touched]
            return topk_with_ties(full, k, secondary)

    def _one_allowed(self, q_idx: np.ndarray, q_val: np.ndarray, k: int, secondary, allowed: np.ndarray,
                     mask: np.ndarray) -> tuple:
        """One query among ``allowed`` rows (``mask`` marks them). The postings give the touched rows'
        scores; an allowed row not touched scores exactly 0, so when the k-th best allowed touched
        score is above 0 no such row can enter or tie, as in :meth:`_one`; otherwise every allowed
        row is a candidate. A dense query is first tried approximately when so set, then from part of
        its postings, as in :meth:`_one`."""
        with self._workspace() as ws:
            k = min(k, allowed.size)
            answer = self._approximate(ws, q_idx, q_val, k, secondary, mask)
            if answer is not None:
                return answer
            answer = self._bounded(ws, q_idx, q_val, k, secondary, mask)
            if answer is not None:
                return answer
            touched_list, t = self._accumulate(ws, q_idx, q_val)
            touched = touched_list[:t].astype(np.int64)
            touched = touched[mask[touched]]
            scores = ws.acc[touched].astype(np.float32)
            if len(touched) >= k and k > 0:
                kth = np.partition(scores, len(scores) - k)[len(scores) - k]
                if kth > TIE_EPS:
                    keep = scores >= kth - TIE_EPS
                    return rank_candidates(touched[keep], scores[keep], k, secondary)
            full = np.zeros(allowed.size, np.float32)
            full[np.searchsorted(allowed, touched)] = scores
            return rank_candidates(allowed, full, k, secondary)

    def search(self, queries, k: int, secondary=None, allowed=None) -> List:
        q = own_rows(queries)
        self._check(q)
        allowed = check_allowed(allowed, self.n)
        if self.n == 0 or (allowed is not None and allowed.size == 0):
            return no_hits(q.shape[0])
        mask = None
        if allowed is not None:
            mask = np.zeros(self.n, bool)
            mask[allowed] = True

        def run(r: int):
            sl = slice(q.indptr[r], q.indptr[r + 1])
            sec = None if secondary is None else (lambda c, r=r: secondary(r, c))
            if mask is not None:
                return Hits(*self._one_allowed(q.indices[sl].astype(np.int64), q.data[sl], k, sec, allowed, mask))
            return Hits(*self._one(q.indices[sl].astype(np.int64), q.data[sl], k, sec))

        threads = self.threads or os.cpu_count() or 1
        if q.shape[0] == 1 or threads == 1:
            return [run(r) for r in range(q.shape[0])]
        from threadpoolctl import threadpool_limits

        # The kernels release the GIL; the tie-break's small matrix products, run in the same threads,
        # at one BLAS thread each: with BLAS's own threads as well the cores were oversubscribed (an
        # exploratory profile of 24 dense queries at a million items: 0.26 s, 0.18 s with this limit).
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(run, range(q.shape[0])))

    # ---- files --------------------------------------------------------------------------------
    def _parts(self) -> Dict[str, np.ndarray]:
        parts = {"indptr": self.indptr, "ids": self.ids, "weights": self.weights}
        if self.bounds is not None:
            parts.update(zip(bounded.Bounds.PARTS, self.bounds.arrays()))
        return parts

    def save(self, folder: str, stem: str) -> List[str]:
        names = []
        for part, array in self._parts().items():
            fname = f"{stem}.{part}.npy"
            np.save(os.path.join(folder, fname), array, allow_pickle=False)
            names.append(fname)
        return names

    def load(self, folder: str, stem: str, vectors=None) -> "InvertedIndex":
        """Memory-map the saved postings (only called after the manifest's checksums were verified)."""
        arrays = {part: np.load(os.path.join(folder, f"{stem}.{part}.npy"), mmap_mode="r", allow_pickle=False)
                  for part in ("indptr", "ids", "weights")}
        if arrays["weights"].dtype != np.dtype(self.dtype) or arrays["ids"].dtype != np.int32:
            raise InputError(f"expected {self.dtype} weights and int32 ids in {stem}.*.npy, got "
                             f"{arrays['weights'].dtype} and {arrays['ids'].dtype}")
        self.indptr, self.ids, self.weights = arrays["indptr"], arrays["ids"], arrays["weights"]
        self.dim = len(self.indptr) - 1
        self.bounds = self._load_bounds(folder, stem) if self._bounds_saved else None
        if vectors is not None:
            self.n = int(vectors.shape[0])
        elif self._items is not None:
            self.n = int(self._items)
        else:
            raise InputError(f"expected the item count of {stem} (in its spec or from its vectors), got neither")
        self._spares, self._heads = [], None
        return self

    def _load_bounds(self, folder: str, stem: str) -> bounded.Bounds:
        """The rows and bounds saved beside the postings, memory-mapped; their dtypes checked."""
        parts = [np.load(os.path.join(folder, f"{stem}.{part}.npy"), mmap_mode="r", allow_pickle=False)
                 for part in bounded.Bounds.PARTS]
        found = bounded.Bounds(*parts)
        if (found.weights.dtype != self.weights.dtype or found.ptr.dtype != np.int64 or found.anchors.dtype.kind not in "iu"
                or found.norms.dtype != np.float32 or found.ranges.shape != (self.dim, 2)):
            raise InputError(f"expected {stem}'s rows and bounds to match its postings ({self.weights.dtype} weights, "
                             f"{self.dim} anchors), got {found.weights.dtype} weights, ranges of shape {found.ranges.shape}")
        return found
