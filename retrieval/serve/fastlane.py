"""Searches by JSON answered without FastAPI's request machinery, the same answers.

A text search's own work on the event loop is small (the batcher's threads encode and search it);
FastAPI's routing, dependency solving, body validation and exception middlewares around it cost more
than the rest of the request together (an in-process timing of the app with the answer stubbed out:
docs/serving.md). This ASGI layer, inside the guard (limits, timeout, metrics), takes
``POST /collections/{name}/search`` with a JSON body, validates it with the endpoint's own body
model (pydantic, as FastAPI would), and answers it with the endpoint's own function
(``routes.search_response``). Anything it does not take whole, a body that is not valid JSON for that
model above all, goes on to FastAPI unchanged (the body replayed), so that every error, message and
status stays the one the spec documents. Errors raised while answering get the handler FastAPI's
exception middleware would pick (``errors.handler_for``); others go up to the same outer 500.
"""

import re
from typing import Callable, Dict, Optional

SEARCH = re.compile(r"/collections/([^/]+)/search")  # Starlette's {name}: one path segment


def is_json(scope) -> bool:
    for key, value in scope.get("headers") or ():
        if key == b"content-type":
            return value.split(b";")[0].strip().lower() == b"application/json"
    return False


async def read_body(receive) -> Optional[bytes]:
    """The whole request body, or None if the client went away first. Its length was bounded by the
    guard (``max_body_bytes`` against Content-Length; a chunked body was refused there)."""
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


def replay(body: bytes, receive):
    """``receive`` for the app behind: the body already read, then the client's own messages."""
    sent = [False]

    async def again():
        if sent[0]:
            return await receive()
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}
    return again


class FastLane:
    """``answer(name, body)``: the response to a validated body; ``validate(obj)``: the body model's
    validation (raises on an invalid one); ``errors``: exception class -> handler (errors.handlers)."""

    def __init__(self, app, answer: Callable, validate: Callable, errors: Dict[type, Callable]):
        self.app, self.answer, self.validate, self.errors = app, answer, validate, errors

    def _parsed(self, raw: bytes):
        import orjson

        try:
            return self.validate(orjson.loads(raw))
        except Exception:  # not JSON, or not this model: FastAPI says what is wrong with it
            return None

    async def __call__(self, scope, receive, send):
        found = (SEARCH.fullmatch(scope.get("path", "")) if scope["type"] == "http" and scope.get("method") == "POST"
                 else None)
        if found is None or not is_json(scope):
            return await self.app(scope, receive, send)
        raw = await read_body(receive)
        if raw is None:
            return None
        body = self._parsed(raw)
        if body is None:
            return await self.app(scope, replay(raw, receive), send)
        try:
            response = await self.answer(found.group(1), body)
        except Exception as exc:
            from retrieval.serve.errors import handler_for
            handle = handler_for(exc, self.errors)
            if handle is None:
                raise
            from starlette.requests import Request
            response = await handle(Request(scope), exc)
        await response(scope, receive, send)
        return None


def install_fast_lane(app, answer: Callable, validate: Callable, errors: Dict[type, Callable]) -> None:
    """Put the fast lane in front of FastAPI's routes, behind every middleware added after it."""
    app.add_middleware(FastLane, answer=answer, validate=validate, errors=errors)
