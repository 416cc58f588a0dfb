"""A bounded cache of rows computed from items by id: the items' dense relative vectors.

Breaking ties between ASIF scores needs each candidate item's dense relative vector (its cosines
to every anchor: one matrix product over the anchors per candidate). A query has a hundred or more
candidates, and the same popular items are candidates of query after query, so recomputing them
was most of a served search's time (results/serve/load.md). A row depends on the item alone, so
it is computed once and kept, least recently used dropped first, up to a memory budget. Answers
are those of computing the rows afresh: float64 rows computed in batches of other sizes differ at
most in their last bits (~1e-16), far below the tie-break's resolution
(``retrieval.core.ranking.SECONDARY_EPS``, 1e-12), as rows computed without the cache already did.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

DEFAULT_BYTES = 128 * 2**20


class RowCache:
    """``cache(ids)`` = ``compute(ids)``, with rows already computed taken from memory."""

    def __init__(self, compute: Callable[[np.ndarray], np.ndarray], max_bytes: int = DEFAULT_BYTES):
        self.compute, self.max_bytes = compute, int(max_bytes)
        self._rows: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __call__(self, ids) -> np.ndarray:
        ids = np.asarray(ids, np.int64).ravel()
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
