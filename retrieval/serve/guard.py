"""What every request meets before an endpoint: the in-flight limit, the body's size, the timeout,
and the request metrics. Each refusal is answered at once, in JSON."""

import asyncio
import time
from typing import Dict

from retrieval.serve.errors import error
from retrieval.serve.metrics import Metrics


def install_guard(app, lim: Dict, metrics: Metrics) -> None:
    """``lim``: ``max_connections``, ``max_body_bytes`` and ``request_timeout_s`` (server.DEFAULT_LIMITS)."""
    inflight = [0]  # requests being answered; read and changed on the event loop only

    async def refusal(request):
        length = request.headers.get("content-length")
        if inflight[0] >= lim["max_connections"]:
            return error(503, f"the server is busy ({inflight[0]} requests in flight, at most "
                              f"{lim['max_connections']}); retry in a second", retry_after=True)
        if length is not None and (not length.isdigit() or int(length) > lim["max_body_bytes"]):
            return error(413, f"expected a request body of at most {lim['max_body_bytes']} bytes, got {length}")
        if length is None and request.method in ("POST", "PUT") and request.headers.get("transfer-encoding"):
            return error(411, "expected a Content-Length header (chunked uploads are not accepted)")
        return None

    @app.middleware("http")
    async def guard_and_measure(request, call_next):
        route = request.scope.get("path", "")
        endpoint = route.split("/")[1] if route.count("/") else route
        resp = await refusal(request)
        if resp is None:
            t = time.perf_counter()
            inflight[0] += 1
            try:
                resp = await asyncio.wait_for(call_next(request), lim["request_timeout_s"])
            except asyncio.TimeoutError:
                resp = error(503, f"the request took longer than {lim['request_timeout_s']} s; try a smaller k "
                                  f"or a shorter clip")
            finally:
                inflight[0] -= 1
            metrics.latency.labels(endpoint).observe(time.perf_counter() - t)
        metrics.requests.labels(endpoint, str(resp.status_code)).inc()
        return resp
