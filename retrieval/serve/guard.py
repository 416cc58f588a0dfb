"""What every request meets before an endpoint: the in-flight limit, the body's size, the timeout,
and the request metrics. Each refusal is answered at once, in JSON.

A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request and response in
memory streams and a task group, which cost more than a search's own work on the event loop under
load (scripts/load_wrk.py)."""

import asyncio
import time
from typing import Dict

from retrieval.serve.errors import error
from retrieval.serve.metrics import Metrics


async def within(seconds: float, awaitable):
    """``awaitable``'s result, or TimeoutError after ``seconds``: on Python 3.11 and later without a
    task of its own for it (``asyncio.wait_for``'s costs one per call, on the event loop of every request)."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)


def refusal(scope, lim: Dict, inflight: int):
    """The error response a request gets before it is read, or None."""
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length")
    length = None if length is None else length.decode("latin-1")
    if inflight >= lim["max_connections"]:
        return error(503, f"the server is busy ({inflight} requests in flight, at most "
                          f"{lim['max_connections']}); retry in a second", retry_after=True)
    if length is not None and (not length.isdigit() or int(length) > lim["max_body_bytes"]):
        return error(413, f"expected a request body of at most {lim['max_body_bytes']} bytes, got {length}")
    if length is None and scope.get("method") in ("POST", "PUT") and headers.get(b"transfer-encoding"):
        return error(411, "expected a Content-Length header (chunked uploads are not accepted)")
    return None


class Guard:
    """``lim``: ``max_connections``, ``max_body_bytes`` and ``request_timeout_s`` (server.DEFAULT_LIMITS)."""

    def __init__(self, app, lim: Dict, metrics: Metrics):
        self.app, self.lim, self.metrics = app, lim, metrics
        self.inflight = 0  # requests being answered; read and changed on the event loop only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path.split("/")[1] if path.count("/") else path
        refused = refusal(scope, self.lim, self.inflight)
        if refused is not None:
            await refused(scope, receive, send)
            self.metrics.requests.labels(endpoint, str(refused.status_code)).inc()
            return
        status, started = [500], [False]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0], started[0] = message["status"], True
            await send(message)

        t = time.perf_counter()
        self.inflight += 1
        try:
            await within(self.lim["request_timeout_s"], self.app(scope, receive, sending))
        except asyncio.TimeoutError:
            if not started[0]:  # nothing sent yet: the client gets the reason
                late = error(503, f"the request took longer than {self.lim['request_timeout_s']} s; try a "
                                  f"smaller k or a shorter clip")
                status[0] = late.status_code
                await late(scope, receive, send)
        finally:
            self.inflight -= 1
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t)
            self.metrics.requests.labels(endpoint, str(status[0])).inc()


def install_guard(app, lim: Dict, metrics: Metrics) -> None:
    app.add_middleware(Guard, lim=lim, metrics=metrics)
