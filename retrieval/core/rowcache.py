"""A bounded cache of rows computed from items by id: the items' dense relative vectors.

Breaking ties between ASIF scores needs each candidate item's dense relative vector (its cosines
to every anchor: one matrix product over the anchors per candidate). A query has a hundred or more
candidates, and the same popular items are candidates of query after query, so recomputing them
was most of a served search's time (results/serve/load.md). A row depends on the item alone, so
it is computed once and kept, least recently used dropped first, up to a memory budget. Answers
are those of computing the rows afresh: float64 rows computed in batches of other sizes differ at
most in their last bits (~1e-16), far below the tie-break's resolution
(``retrieval.core.ranking.SECONDARY_EPS``, 1e-12), as rows computed without the cache already did.

When the number of items is known and all their rows fit the budget, the rows live in one array with a
mask of those computed (a *slab*): a query's hundred candidates are then one fancy index, where the
least-recently-used dictionary costs a Python step per candidate (most of a batched search's time).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Optional

import numpy as np

DEFAULT_BYTES = 128 * 2**20


class RowCache:
    """``cache(ids)`` = ``compute(ids)``, with rows already computed taken from memory."""

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray], max_bytes: int = DEFAULT_BYTES,
                 n_rows: Optional[int] = None):
        self.compute, self.max_bytes, self.n_rows = compute, int(max_bytes), n_rows
        self._rows: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self._slab: Optional[np.ndarray] = None  # all rows, when they fit (n_rows known)
        self._have: Optional[np.ndarray] = None
        self._too_many = False  # the rows were seen not to fit: no slab, and no row computed to see again

    def __call__(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64).ravel()
        if self._slab is not None:
            return self._from_slab(ids)
        if self.n_rows is not None and len(ids) and self._start_slab(ids):
            return self._from_slab(ids)
        return self._from_dict(ids)

    def _start_slab(self, ids: np.ndarray) -> bool:
        """Holds every row in one array when ``n_rows`` of them fit the budget (one row computed to see,
        once: at a million items a row computed only to see it did not fit was a fifth of a query's
        tie-break, 8.4 against 6.6 ms in an exploratory profile)."""
        if self._too_many:
            return False
        row = np.asarray(self.compute(ids[:1]))
        if row.ndim != 2 or len(row) != 1 or self.n_rows * row[0].nbytes > self.max_bytes:
            self._too_many = True
            return False
        with self._lock:
            if self._slab is None:
                self._slab = np.empty((self.n_rows, row.shape[1]), row.dtype)
                self._have = np.zeros(self.n_rows, bool)
                self._bytes = self._slab.nbytes
            self._slab[ids[0]], self._have[ids[0]] = row[0], True  # computed: kept, not computed again
            self.misses += 1
        return True

    def fill(self, block: int = 4096) -> bool:
        """Computes every row now, in blocks, when all of them fit the budget (False when they do not):
        the first queries then cost what later ones do, not a row computation per candidate."""
        if not self.n_rows or (self._slab is None and not self._start_slab(np.zeros(1, np.int64))):
            return False
        for start in range(0, self.n_rows, block):
            self._complete(np.arange(start, min(start + block, self.n_rows)))
        return True

    def _complete(self, ids: np.ndarray) -> int:
        """Computes and keeps the rows of ``ids`` the slab lacks; how many there were."""
        with self._lock:
            missing = np.unique(ids[~self._have[ids]])
        if len(missing):
            new = np.asarray(self.compute(missing))
            if new.ndim != 2 or len(new) != len(missing):
                raise RuntimeError(f"expected {len(missing)} rows, got an array of shape {new.shape}")
            with self._lock:  # a row another thread kept meanwhile stays as it is: a row never changes once kept
                fresh = ~self._have[missing]
                self._slab[missing[fresh]], self._have[missing[fresh]] = new[fresh], True
        return len(missing)

    def _from_slab(self, ids: np.ndarray) -> np.ndarray:
        computed = self._complete(ids)
        with self._lock:
            self.hits += len(ids) - computed
            self.misses += computed
            return self._slab[ids]

    def _from_dict(self, ids: np.ndarray) -> np.ndarray:
        with self._lock:
            have = {int(i): self._rows.get(int(i)) for i in ids}
            missing = np.array(sorted({i for i, r in have.items() if r is None}), np.int64)
        if len(missing):
            new = np.asarray(self.compute(missing))
            if new.ndim != 2 or len(new) != len(missing):
                raise RuntimeError(f"expected {len(missing)} rows, got an array of shape {new.shape}")
            have.update({int(i): row for i, row in zip(missing, new)})
        with self._lock:
            self.hits += len(ids) - len(missing)
            self.misses += len(missing)
            for i in ids.tolist():
                row = have[i]
                if i in self._rows:
                    self._rows.move_to_end(i)
                elif row.nbytes <= self.max_bytes:
                    # a copy: a view would keep its whole batch alive, unseen by the budget
                    self._rows[i] = row = have[i] = row.copy()
                    self._bytes += row.nbytes
            while self._bytes > self.max_bytes and self._rows:
                _, old = self._rows.popitem(last=False)
                self._bytes -= old.nbytes
        if not len(ids):
            return np.asarray(self.compute(ids))
        return np.stack([have[i] for i in ids.tolist()])
