"""What a running server holds: its collections (each following its folder), the lock around the
encoders, the micro-batcher, the limits and the metrics; and how one query is answered."""

import asyncio
import threading
from typing import Dict, List, Optional

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from retrieval.api import Searchable
from retrieval.errors import CollectionDamagedError
from retrieval.serve.batching import MicroBatcher
from retrieval.serve.guard import within
from retrieval.serve.live import LiveCollection
from retrieval.serve.metrics import Metrics
from retrieval.serve.querycache import QueryCache

DEFAULT_QUERY_CACHE = 4096  # text queries whose embeddings a server keeps (0: none)


class Served:
    """``cols``: name -> LiveCollection; ``lim``: the limits; ``bat``: the batching settings."""

    def __init__(self, cols: Dict[str, LiveCollection], lim: Dict, bat: Dict, metrics: Metrics,
                 query_cache: int = DEFAULT_QUERY_CACHE):
        self.cols, self.lim, self.metrics = cols, lim, metrics
        self.query_cache = QueryCache(query_cache)
        # Encoders are not guaranteed thread-safe, nor is a search's lazily filled state: one thread at a
        # time encodes and one searches, so that with two batch workers one batch is encoded while the
        # one before is searched. ``lock`` holds both (classify encodes and searches in one call).
        self.encode_lock, self.search_lock = threading.Lock(), threading.Lock()
        self.lock = Both(self.encode_lock, self.search_lock)
        # two stages: a batch is encoded while the one before is searched (batching.py's pipeline)
        self.batcher = (MicroBatcher(self.search_group, prepare=self.encode_group, max_batch=int(bat["max_batch"]),
                                     max_wait_s=bat["max_wait_ms"] / 1000, max_queue=int(bat["max_queue"]),
                                     workers=int(bat["workers"]), waited=self._waited)
                        if bat["max_wait_ms"] > 0 else None)

    def _waited(self, seconds: float) -> None:
        self.metrics.stages.labels("*", "wait").observe(seconds)

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
        return self.search_group(key, self.encode_group(key, queries))

    def encode_group(self, key, queries: List) -> tuple:
        """The first stage of a batched search: (collection, kind, queries, texts), text and file
        queries encoded where the collection can encode them apart from its search."""
        name, kind, modality, k, target, route, where, *_ = key
        col = self.collection(name)
        self.metrics.batch_sizes.labels(name).observe(len(queries))
        texts = list(queries) if kind == "queries" and modality == "text" else None
        if kind == "queries" and hasattr(col, "encode_queries"):
            with self.encode_lock:
                queries = self._encode(col, name, queries, k=k, modality=modality, target=target, route=route,
                                       where=where)
            kind = "encoded"
        return col, kind, queries, texts

    def search_group(self, key, encoded: tuple) -> List:
        """The second stage: the encoded queries searched, one (hits, route) per query. The collection is
        the one they were encoded for, even if a newer version was swapped in between the stages."""
        _, _, modality, k, target, route, where, *rest = key
        captions = rest[0] if rest else True  # the caption match (text queries to the items), on unless asked
        col, kind, queries, texts = encoded
        with self.lock if kind == "queries" else self.search_lock:
            if kind == "encoded":
                hits = col.search_vectors(queries, k=k, modality=modality, target=target, route=route, where=where,
                                          captions=captions, texts=texts)
            elif kind == "vectors":
                hits = col.search_vectors(queries, k=k, modality=modality, target=target, route=route, where=where,
                                          captions=captions)
            else:
                hits = col.search_many(queries, k=k, modality=modality, target=target, route=route, where=where,
                                       captions=captions)
            used = col.plan(modality, target, route).route
        return [(h, used) for h in hits]

    def _encode(self, col, name: str, queries: List, **how):
        """The queries encoded; text ones seen before for this collection version come from the cache."""
        def encode(some):
            return col.encode_queries(some, **how)
        if how["modality"] != "text":
            return encode(queries)
        cache, hits = self.query_cache, self.query_cache.hits
        out = cache.encode((name, col.manifest.get("manifest_sha256"), str(col.folder)), "text", queries, encode)
        self.metrics.query_cache.labels("hit").inc(cache.hits - hits)
        self.metrics.query_cache.labels("miss").inc(len(queries) - (cache.hits - hits))
        return out

    async def answer_async(self, key, query):
        """``answer`` for a coroutine: it awaits the batch instead of holding a thread while it waits."""
        self.collection(key[0])
        if self.batcher is None:
            return (await run_in_threadpool(self.run_group, key, [query]))[0]
        fut = self.batcher.submit_future(key, query)
        try:
            return await within(self.lim["request_timeout_s"], asyncio.wrap_future(fut))
        except asyncio.TimeoutError:
            fut.cancel()
            raise

    def answer(self, key, query):
        """(hits, route) of one query: through the batcher, or alone under the lock."""
        self.collection(key[0])  # an unknown collection is a 404 before anything waits
        if self.batcher is None:
            return self.run_group(key, [query])[0]
        return self.batcher.submit(key, query, timeout=self.lim["request_timeout_s"])


class Both:
    """Two locks taken as one, always in the same order (encoding's, then searching's)."""

    def __init__(self, first: threading.Lock, second: threading.Lock):
        self.first, self.second = first, second

    def __enter__(self):
        self.first.acquire()
        self.second.acquire()
        return self

    def __exit__(self, *exc):
        self.second.release()
        self.first.release()
