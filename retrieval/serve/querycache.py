"""A bounded cache of text queries' embeddings: a query asked again is not encoded again.

Search logs repeat themselves (the same few hundred queries make much of a day's traffic), and a text
query's embedding is most of its cost (scripts/load_wrk.py). An embedding depends on the text and the
encoder alone, so it is kept per collection version (the caller's ``owner`` key: its name and
manifest checksum): a collection rewritten with another encoder (``retrieval reencode``) starts with none. Least recently used first out, up to ``max_entries``.
"""

import threading
from collections import OrderedDict
from typing import Callable, List, Sequence

import numpy as np


class QueryCache:
    def __init__(self, max_entries: int = 4096):
        self.max_entries = int(max_entries)
        self._rows: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def encode(self, owner, modality: str, texts: Sequence[str],
               encode: Callable[[List[str]], np.ndarray]) -> np.ndarray:
        """``encode(texts)``, with the texts already seen for ``owner`` taken from memory."""
        keys = [(owner, modality, t) for t in texts]
        with self._lock:
            have = [self._rows.get(k) for k in keys]
        new = list(dict.fromkeys(t for t, h in zip(texts, have) if h is None))
        made = dict(zip(new, encode(new))) if new else {}
        with self._lock:
            self.misses += len(new)  # encoded; a text twice in one batch is encoded once
            self.hits += len(texts) - len(new)
            out = []
            for k, t, h in zip(keys, texts, have):
                row = h if h is not None else made[t]
                if self.max_entries > 0:
                    self._rows[k] = row
                    self._rows.move_to_end(k)
                out.append(row)
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)
        return np.vstack(out)
