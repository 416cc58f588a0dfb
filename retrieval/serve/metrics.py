"""The server's Prometheus metrics, in a registry of its own (one per app: two apps in one process,
as in the tests, never share or unregister each other's)."""

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """Requests and latency per endpoint, query stages per collection, and batch sizes."""

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
