"""What a running server holds: its collections (each following its folder), the lock around the
encoders, the micro-batcher, the limits and the metrics; and how one query is answered."""

import threading
from typing import Dict, List, Optional

from starlette.exceptions import HTTPException

from retrieval.api import Searchable
from retrieval.errors import CollectionDamagedError
from retrieval.serve.batching import MicroBatcher
from retrieval.serve.live import LiveCollection
from retrieval.serve.metrics import Metrics


class Served:
    """``cols``: name -> LiveCollection; ``lim``: the limits; ``bat``: the batching settings."""

    def __init__(self, cols: Dict[str, LiveCollection], lim: Dict, bat: Dict, metrics: Metrics):
        self.cols, self.lim, self.metrics = cols, lim, metrics
        self.lock = threading.Lock()  # encoders are not guaranteed thread-safe; queries are short
        self.batcher = (MicroBatcher(self.run_group, max_batch=int(bat["max_batch"]),
                                     max_wait_s=bat["max_wait_ms"] / 1000, max_queue=int(bat["max_queue"]),
                                     workers=int(bat["workers"]))
                        if bat["max_wait_ms"] > 0 else None)

    def collection(self, name: str) -> Searchable:
        if name not in self.cols:
            raise HTTPException(404, f"unknown collection {name!r}; serving: {sorted(self.cols)}")
        return self.cols[name].current()

    def damage(self, name: str) -> Optional[str]:
        """Why the collection ``name`` answers nothing (a file cut short while served), or None."""
        try:
            self.cols[name].current().check_files()
        except CollectionDamagedError as exc:
            return str(exc)
        return None

    def run_group(self, key, queries: List) -> List:
        """One batched search: every query of ``queries`` shares ``key``'s settings."""
        name, kind, modality, k, target, route, where, *rest = key
        captions = rest[0] if rest else True  # the caption match (text queries to the items), on unless asked
        col = self.collection(name)
        self.metrics.batch_sizes.labels(name).observe(len(queries))
        with self.lock:
            if kind == "vectors":
                hits = col.search_vectors(queries, k=k, modality=modality, target=target, route=route, where=where,
                                          captions=captions)
            else:
                hits = col.search_many(queries, k=k, modality=modality, target=target, route=route, where=where,
                                       captions=captions)
            used = col.plan(modality, target, route).route
        return [(h, used) for h in hits]

    def answer(self, key, query):
        """(hits, route) of one query: through the batcher, or alone under the lock."""
        self.collection(key[0])  # an unknown collection is a 404 before anything waits
        if self.batcher is None:
            return self.run_group(key, [query])[0]
        return self.batcher.submit(key, query, timeout=self.lim["request_timeout_s"])
