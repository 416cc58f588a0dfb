"""The server's Prometheus metrics, in a registry of its own (one per app: two apps in one process,
as in the tests, never share or unregister each other's).

With several worker processes (``serve --workers N``, workers.py) each process writes its values to
files in ``$PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when it is
imported) and ``/metrics``, whichever worker answers it, sums every process's files: the counts are
the server's, not one worker's."""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Requests and latency per endpoint, query stages per collection, batch sizes and the server
    processes started (one per worker, one more for each worker that died and was replaced)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("retrieval_requests_total", "HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("retrieval_request_seconds", "HTTP request latency", ["endpoint"],
                                 registry=self.registry)
        self.stages = Histogram("retrieval_stage_seconds", "query stage latency", ["collection", "stage"],
                                registry=self.registry)
        self.query_cache = Counter("retrieval_query_cache_total", "text queries found in (hit) or added to (miss) "
                                   "the embedding cache", ["result"], registry=self.registry)
        self.batch_sizes = Histogram("retrieval_batch_queries", "queries answered by one batched search",
                                     ["collection"], buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.starts = Counter("retrieval_worker_starts_total", "server processes started: one per worker, and one "
                              "more for each worker that died and was replaced", registry=self.registry)

    def exposed(self) -> CollectorRegistry:
        """What ``/metrics`` shows: this registry, or every worker's values summed."""
        if not os.environ.get(MULTIPROCESS_DIR):
            return self.registry
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
