"""Every error the server answers is JSON ``{"error": message}`` with the status that names its kind,
never a stack trace; and the OpenAPI spec documents each status an endpoint may answer."""

import logging
from typing import Callable, Dict, Optional, Sequence

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from retrieval.errors import CollectionDamagedError, RetrievalError, UnsupportedQueryError
from retrieval.serve.batching import QueueFull
from retrieval.store.filters import FilterError

log = logging.getLogger("retrieval.serve")

MEANING = {400: "bad input (a file that does not decode, too many labels...)",
           403: "the item's file is not served (a link out of its folder, not a regular file), or this server "
                "does not write collections (captions without serve --allow-captions)",
           404: "unknown collection or item",
           409: "well formed, but not something this collection holds (a modality, target or route it has no "
                "bridge for, vectors of another width, an item id it does not have, no item left to describe)",
           411: "a chunked body (send Content-Length)", 413: "a body or file over the size limit",
           422: "a request that does not match this spec",
           503: "the request took longer than the timeout, too many requests are in flight or waiting (then with "
                "Retry-After), or the collection's files were damaged while served"}
# What a POST that searches or classifies may answer besides 200.
POSTED = (400, 404, 409, 411, 413, 422, 503)
# A validation message of pydantic's, said as this project says it (field -> what was expected).
PLAIN = {"template": "expected a prompt template with exactly one {} where the label goes (literal braces as {{ and }})",
         "labels": "expected at least one label (comma or newline separated)",
         "query": "expected a text query with something other than spaces"}


class ErrorBody(BaseModel):
    error: str = Field(..., description="what was expected, what was received, and what to do instead")


def documented(*codes: int) -> Dict:
    """The ``responses=`` of an endpoint that may answer ``codes``."""
    return {c: {"model": ErrorBody, "description": MEANING[c]} for c in codes}


def error(status: int, message: str, retry_after: bool = False) -> JSONResponse:
    resp = JSONResponse({"error": message}, status_code=status)
    if retry_after:
        resp.headers["Retry-After"] = "1"
    return resp


def _said(e: Dict) -> str:
    field = str(e.get("loc", ("",))[-1])
    if field == "query" and e.get("type") == "string_too_short":
        return "expected a non-empty text query"
    if e.get("type") == "string_pattern_mismatch" and field in PLAIN:
        return f"{PLAIN[field]}, got {e.get('input')!r}"
    return str(e.get("msg"))


def invalid_request(exc: RequestValidationError, modalities: Sequence[str]) -> JSONResponse:
    """A 422 that says what was wrong with the request, against the shape it meant."""
    errs = exc.errors()
    bad_json = [e for e in errs if e.get("type") == "json_invalid"]
    if bad_json:
        ctx = bad_json[0].get("ctx", {}).get("error", "")
        at = bad_json[0].get("loc", ("body", "?"))[-1]
        return error(422, f"expected a JSON object as the request body, got text that is not JSON "
                          f"({ctx or 'malformed'} at character {at})")
    body = getattr(exc, "body", None)
    branches = {str(e["loc"][1]) for e in errs if len(e.get("loc", ())) > 2 and e["loc"][0] == "body"
                and str(e["loc"][1]).startswith(("TextQuery", "VectorQuery_"))}
    if branches:  # a search body is one of several shapes: report against the one it meant
        if not isinstance(body, dict) or ("query" in body) == ("vector" in body):
            return error(422, "invalid request: expected a JSON object with exactly one of 'query' (text) or "
                              "'vector' (an embedding, with its 'modality'), plus optional 'k', 'target', 'route'")
        meant = "TextQuery" if "query" in body else f"VectorQuery_{body.get('modality', 'text')}"
        if meant not in branches and not meant.startswith("TextQuery"):
            return error(422, f"invalid request: modality: expected one of {list(modalities)}, "
                              f"got {body.get('modality')!r}")
        errs = [dict(e, loc=(e["loc"][0],) + tuple(e["loc"][2:])) for e in errs
                if len(e.get("loc", ())) > 2 and e["loc"][1] == meant]
    parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {_said(e)}" for e in errs]
    return error(422, "invalid request: " + "; ".join(parts))


def _status(status: int, say=str, retry_after: bool = False):
    async def handle(request, exc):
        return error(status, say(exc), retry_after)
    return handle


async def _http(request, exc):
    resp = error(exc.status_code, str(exc.detail))
    resp.headers.update(exc.headers or {})  # e.g. a 405's Allow
    return resp


async def _unexpected(request, exc):  # never a stack trace to the client
    log.exception("unexpected error on %s", request.url.path)
    return error(500, f"internal error ({type(exc).__name__}); see the server log")


def handlers(modalities: Sequence[str]) -> Dict[type, Callable]:
    """Each kind of error and its handler (the most specific class of an exception's MRO applies)."""
    async def invalid(request, exc):
        return invalid_request(exc, modalities)

    return {RetrievalError: _status(400),
            FilterError: _status(422),  # a where filter that does not parse or names no column
            UnsupportedQueryError: _status(409),  # well formed, not something it holds
            CollectionDamagedError: _status(503),  # that collection alone; the others answer on
            QueueFull: _status(503, lambda exc: f"the server is busy ({exc}); retry in a second",
                               retry_after=True),  # refused at once, never left to hang
            RequestValidationError: invalid,
            HTTPException: _http,
            Exception: _unexpected}


def install_error_handlers(app, modalities: Sequence[str]) -> Dict[type, Callable]:
    """Map each kind of error to its status (FastAPI takes the handler of the most specific class);
    returns the table, for what answers outside FastAPI's routes (fastlane.py)."""
    table = handlers(modalities)
    for cls, handle in table.items():
        app.add_exception_handler(cls, handle)
    return table


def handler_for(exc: BaseException, table: Dict[type, Callable]) -> Optional[Callable]:
    """The handler FastAPI's exception middleware would call for ``exc``, or None. ``Exception``'s is
    not one: Starlette leaves the catch-all to its outermost middleware, which answers 500 and logs."""
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in table:
            return table[cls]
    return None
