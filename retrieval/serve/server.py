"""HTTP API and web page over the same facade as the CLI (FastAPI; ``retrieval serve``).

Safe by default: it binds to 127.0.0.1 unless told otherwise; request bodies, query lengths, k and
image sizes are bounded; uploads are decoded with limits (Pillow's decompression-bomb guard at
``max_image_pixels``); every error is JSON ``{"error": "..."}`` with a 4xx status and no stack
trace. Files are served only as items of a collection, by id: no request names a path, and an item
whose file resolves (through symlinks) outside its own folder is refused.

Models and indexes load at start-up, and again only when a collection's folder is rewritten on disk
(``live.py``: the new version is opened beside the old, which answers until the swap). Prometheus metrics count requests and time them per
endpoint, and time the query stages (encode, relativise, search) per collection.
"""

# No "from __future__ import annotations" here: FastAPI reads the endpoint annotations at run time,
# and they name types imported inside create_app (fastapi is an optional dependency).
import asyncio
import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Union

from retrieval.api import (
    DEFAULT_TEMPLATES,
    ROUTES,
    Searchable,
    check_template,
    media_modality,
    open_collection,
    open_image,
)
from retrieval.errors import CollectionDamagedError, InputError, RetrievalError, UnsupportedQueryError
from retrieval.serve.batching import MicroBatcher, QueueFull
from retrieval.serve.live import LiveCollection
from retrieval.store.filters import MAX_LENGTH as MAX_FILTER_CHARS
from retrieval.store.filters import FilterError

# A prompt template: exactly one {} where the label goes, literal braces doubled (classify.check_template).
TEMPLATE_PATTERN = r"^(?:[^{}]|\{\{|\}\})*\{\}(?:[^{}]|\{\{|\}\})*$"
DEFAULT_LIMITS = {"max_body_bytes": 10 * 1024 * 1024, "max_query_chars": 1000, "max_k": 100,
                  "max_image_pixels": 40_000_000, "max_labels": 1000, "request_timeout_s": 30.0,
                  "max_connections": 512}
# max_connections: requests in flight at once; past it a request is answered 503 (JSON, Retry-After)
# at once. It is twice the search queue (256) so that a burst meets the queue's own limit first.
# Open connections, idle keep-alive ones included, are capped by uvicorn at CONNECTION_HEADROOM times
# it (uvicorn's own plain-text 503 past that).
CONNECTION_HEADROOM = 2
# Micro-batching of searches (batching.py): how long the first query of a batch waits for others
# (0: one query at a time, as before batching), the most queries a batch takes, how many may wait.
DEFAULT_BATCHING = {"max_wait_ms": 5.0, "max_batch": 32, "max_queue": 256, "workers": 1}


def _deps():
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise InputError("the server needs the 'serve' extra: pip install 'retrieval[serve]' "
                         "(fastapi, fastapi-offline, uvicorn, python-multipart, prometheus-client)") from exc


@contextlib.contextmanager
def upload_named(query, modality: str, filename: Optional[str]):
    """An uploaded sound is read from a temporary file: an error about it names the upload, not
    where the server put it."""
    try:
        yield
    except RetrievalError as exc:
        if modality != "audio" or str(query) not in str(exc):
            raise
        name = filename or "the upload"
        raise type(exc)(str(exc).replace(repr(str(query)), repr(name)).replace(str(query), name)) from None


def public_info(info: Dict, name: str) -> Dict:
    """A collection's description as a client sees it: the server's own file paths (the folder, the
    corpus and anchor sources, skipped files) are reduced to their last part."""
    def strip(x, key=""):
        if isinstance(x, dict):
            return {k: strip(v, k) for k, v in x.items()}
        if isinstance(x, list):
            return [strip(v, key) for v in x]
        if key in ("path", "source", "name") and isinstance(x, str) and os.path.isabs(x):
            return Path(x).name
        return x
    return dict(strip(info), path=name)


def create_app(collections: Dict[str, str], *, device: str = "cpu", limits: Optional[Dict] = None,
               warm: bool = True, shard_actors: Optional[str] = None, query_encoders: Optional[Dict[str, str]] = None,
               reload_s: float = 2.0, batching: Optional[Dict] = None, dense_cache_mb: Optional[float] = None):
    """A FastAPI app serving ``{name: collection folder}``. Sharded collections (``build --ray``)
    are searched in this process, or with ``shard_actors`` set (a Ray address; ``""`` for a local
    cluster) by Ray actors that each hold one shard. ``query_encoders`` (``{"image_encoder": SPEC}``...)
    encode queries with other encoders than the collections', stitched through their anchors.
    A collection whose folder is rewritten (build, add, reanchor, reencode) is reopened, checked at most
    every ``reload_s`` seconds (0: never). Concurrent searches are answered in micro-batches
    (``batching``: see ``DEFAULT_BATCHING``; ``max_wait_ms=0`` answers one at a time).
    ``dense_cache_mb``: the memory each collection side may keep for items' dense relative vectors
    (retrieval/core/rowcache.py; default 128; 0 keeps none).

    >>> app = create_app({"emoji": "indexes/emoji-demo"})  # doctest: +SKIP
    """
    _deps()
    from fastapi import File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from fastapi_offline import FastAPIOffline  # /docs from packaged assets: Swagger UI's CDN is not reachable offline
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
    from pydantic import BaseModel, ConfigDict, Field, create_model
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    lim = dict(DEFAULT_LIMITS, **(limits or {}))
    unknown = set(batching or {}) - set(DEFAULT_BATCHING)
    if unknown:
        raise InputError(f"unknown batching settings {sorted(unknown)}; known: {sorted(DEFAULT_BATCHING)}")
    bat = dict(DEFAULT_BATCHING, **(batching or {}))
    if not collections:
        raise InputError("expected at least one collection folder to serve, got none")
    cols: Dict[str, LiveCollection] = {}
    registry = CollectorRegistry()
    requests = Counter("retrieval_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("retrieval_request_seconds", "HTTP request latency", ["endpoint"], registry=registry)
    stages = Histogram("retrieval_stage_seconds", "query stage latency", ["collection", "stage"], registry=registry)
    batch_sizes = Histogram("retrieval_batch_queries", "queries answered by one batched search", ["collection"],
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=registry)

    def opener(name: str, folder: str):
        def open_warm() -> Searchable:
            col = open_collection(folder, device=device, shard_actors=shard_actors, **(query_encoders or {}))
            col.timer = (lambda stage, s: stages.labels(name, stage).observe(s))
            if dense_cache_mb is not None:
                col.dense_cache_bytes = int(dense_cache_mb * 2**20)
            if warm:
                for m in col.manifest["encoders"]:
                    col.encoder(m)
            return col
        return open_warm

    for name, folder in collections.items():
        cols[name] = LiveCollection(folder, opener(name, folder), every_s=reload_s)
    lock = threading.Lock()  # encoders are not guaranteed thread-safe; queries are short
    # What a request may name, from the collections served: the spec states it, so that a request
    # the spec allows is one the server can answer (a collection that lacks what another has answers 409).
    # (Stated at start-up: a collection reopened later with another encoder width answers its raw
    # vectors only after a restart; text and file queries are unaffected.)
    served = [c.current() for c in cols.values()]
    encoders = [(m, e["dim"]) for c in served for m, e in c.manifest["encoders"].items()]
    modalities = tuple(sorted({m for m, _ in encoders}))
    targets = ("items",) + tuple(sorted({m for c in served for m in getattr(c, "sides", [c.modality])}))
    Modality, Target, Route = Literal[modalities], Literal[targets], Literal[ROUTES]

    app = FastAPIOffline(title="retrieval", version="1",
                  description="Cross-modal search with encoders never trained together (ASIF relative "
                              "representations). Every error is JSON {\"error\": message}.")

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RetrievalError)
    async def _bad_input(request, exc):
        return error(400, str(exc))

    @app.exception_handler(FilterError)
    async def _bad_filter(request, exc):  # a where filter that does not parse or names a missing column
        return error(422, str(exc))

    @app.exception_handler(UnsupportedQueryError)
    async def _not_here(request, exc):  # well formed, but not something this collection holds
        return error(409, str(exc))

    @app.exception_handler(CollectionDamagedError)
    async def _damaged(request, exc):  # this collection's files changed under it; the others answer on
        return error(503, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
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
        plain = {"template": "expected a prompt template with exactly one {} where the label goes (literal braces "
                             "as {{ and }})", "labels": "expected at least one label (comma or newline separated)",
                 "query": "expected a text query with something other than spaces"}

        def said(e) -> str:
            field = str(e.get("loc", ("",))[-1])
            if field == "query" and e.get("type") == "string_too_short":
                return "expected a non-empty text query"
            if e.get("type") == "string_pattern_mismatch" and field in plain:
                return f"{plain[field]}, got {e.get('input')!r}"
            return str(e.get("msg"))
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ()))}: {said(e)}" for e in errs]
        return error(422, "invalid request: " + "; ".join(parts))

    @app.exception_handler(QueueFull)
    async def _busy(request, exc):  # refused at once, never left to hang
        resp = error(503, f"the server is busy ({exc}); retry in a second")
        resp.headers["Retry-After"] = "1"
        return resp

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        resp = error(exc.status_code, str(exc.detail))
        resp.headers.update(exc.headers or {})  # e.g. a 405's Allow
        return resp

    @app.exception_handler(Exception)
    async def _unexpected(request, exc):  # never a stack trace to the client
        import logging

        logging.getLogger(__name__).exception("unexpected error on %s", request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")

    inflight = [0]  # requests being answered; read and changed on the event loop only

    @app.middleware("http")
    async def _guard_and_measure(request: Request, call_next):
        route = request.scope.get("path", "")
        endpoint = route.split("/")[1] if route.count("/") else route
        length = request.headers.get("content-length")
        if inflight[0] >= lim["max_connections"]:  # refused at once, in JSON, never left to hang
            resp = error(503, f"the server is busy ({inflight[0]} requests in flight, at most "
                              f"{lim['max_connections']}); retry in a second")
            resp.headers["Retry-After"] = "1"
        elif length is not None and (not length.isdigit() or int(length) > lim["max_body_bytes"]):
            resp = error(413, f"expected a request body of at most {lim['max_body_bytes']} bytes, got {length}")
        elif length is None and request.method in ("POST", "PUT") and request.headers.get("transfer-encoding"):
            resp = error(411, "expected a Content-Length header (chunked uploads are not accepted)")
        else:
            t = time.perf_counter()
            inflight[0] += 1
            try:
                resp = await asyncio.wait_for(call_next(request), lim["request_timeout_s"])
            except asyncio.TimeoutError:
                resp = error(503, f"the request took longer than {lim['request_timeout_s']} s; try a smaller k "
                                  f"or a shorter clip")
            finally:
                inflight[0] -= 1
            latency.labels(endpoint).observe(time.perf_counter() - t)
        requests.labels(endpoint, str(resp.status_code)).inc()
        return resp

    def collection(name: str) -> Searchable:
        if name not in cols:
            raise StarletteHTTPException(404, f"unknown collection {name!r}; serving: {sorted(cols)}")
        return cols[name].current()

    def hits_json(col_name: str, hits) -> List[Dict]:
        """Hits as a client sees them: where the server keeps its files is not said; each item's file is
        named (``file``) and fetched at its ``url``."""
        out = []
        for h in hits:
            d = h.to_dict()
            d["file"] = None if h.path is None else Path(h.path).name
            del d["path"]
            if h.path is not None:
                item = h.item_id if h.kind == "text" else h.id
                d["url"] = f"/collections/{col_name}/items/{item}/file"
            out.append(d)
        return out

    class ErrorBody(BaseModel):
        error: str = Field(..., description="what was expected, what was received, and what to do instead")

    def errors(*codes: int) -> Dict:
        said = {400: "bad input (a file that does not decode, too many labels...)",
                403: "the item's file is not served (a link out of its folder, not a regular file)",
                404: "unknown collection or item", 409: "well formed, but not something this collection holds "
                "(a modality, target or route it has no bridge for, vectors of another width)",
                411: "a chunked body (send Content-Length)", 413: "a body or file over the size limit",
                422: "a request that does not match this spec", 503: "the request took longer than the timeout, or too many "
                "queries are waiting (then with Retry-After)"}
        return {c: {"model": ErrorBody, "description": said[c]} for c in codes}

    POSTED = (400, 404, 409, 411, 413, 422, 503)
    k_field = dict(ge=1, le=lim["max_k"], description=f"results wanted, 1 to {lim['max_k']}")
    # a metadata filter (retrieval/store/filters.py): parsed there, never evaluated as code or SQL
    where_field = dict(min_length=1, max_length=MAX_FILTER_CHARS, pattern=r"\S",
                       description="filter on the stored columns, e.g. \"label = 'cat' AND year >= 2020\"")

    class TextQuery(BaseModel):
        model_config = ConfigDict(extra="forbid")
        query: str = Field(..., min_length=1, max_length=lim["max_query_chars"], pattern=r"\S",
                           description="text query")
        k: int = Field(10, **k_field)
        target: Optional[Target] = Field(None, description="items (default), or a modality the collection holds")
        route: Optional[Route] = Field(None, description="force a route (default: the planner's choice)")
        where: Optional[str] = Field(None, **where_field)

    def vector_query(modality: str):
        """A body carrying an embedding of ``modality``: its width is stated when every collection
        served agrees on it."""
        dims = [d for m, d in encoders if m == modality]
        width = dict(min_length=min(dims), max_length=max(dims))
        return create_model(
            f"VectorQuery_{modality}", __config__=ConfigDict(extra="forbid"),
            vector=(List[float], Field(..., description=f"an embedding from the collection's {modality} encoder",
                                       **width)),
            modality=(Literal[modality], ... if modality != "text" else "text"),
            k=(int, Field(10, **k_field)), target=(Optional[Target], None), route=(Optional[Route], None),
            where=(Optional[str], Field(None, **where_field)))

    SearchBody = Union[(TextQuery,) + tuple(vector_query(m) for m in modalities)]

    def damage(c: LiveCollection) -> Optional[str]:
        try:
            c.current().check_files()
        except CollectionDamagedError as exc:
            return str(exc)
        return None

    @app.get("/health", responses=errors(503))
    def health():
        stale = {n: c.error for n, c in cols.items() if c.error}
        damaged = {n: why for n, c in cols.items() if (why := damage(c))}
        return {"status": "degraded" if damaged else "ok", "collections": sorted(cols),
                **({"not_reopened": stale} if stale else {}), **({"damaged": damaged} if damaged else {})}

    @app.get("/collections", responses=errors(503))
    def list_collections():
        return {name: public_info(c.current().info(), name) for name, c in cols.items()}

    @app.get("/collections/{name}", responses=errors(404, 422, 503))
    def describe(name: str):
        return public_info(collection(name).info(), name)

    def run_group(key, queries: List) -> List:
        """One batched search: every query of ``queries`` shares ``key``'s settings."""
        name, kind, modality, k, target, route, where = key
        col = collection(name)
        batch_sizes.labels(name).observe(len(queries))
        with lock:
            if kind == "vectors":
                hits = col.search_vectors(queries, k=k, modality=modality, target=target, route=route, where=where)
            else:
                hits = col.search_many(queries, k=k, modality=modality, target=target, route=route, where=where)
            used = col.plan(modality, target, route).route
        return [(h, used) for h in hits]

    batcher = (MicroBatcher(run_group, max_batch=int(bat["max_batch"]), max_wait_s=bat["max_wait_ms"] / 1000,
                            max_queue=int(bat["max_queue"]), workers=int(bat["workers"]))
               if bat["max_wait_ms"] > 0 else None)

    def answer(key, query):
        """(hits, route) of one query: through the batcher, or alone under the lock."""
        collection(key[0])  # an unknown collection is a 404 before anything waits
        if batcher is None:
            return run_group(key, [query])[0]
        return batcher.submit(key, query, timeout=lim["request_timeout_s"])

    @app.post("/collections/{name}/search", responses=errors(*POSTED))
    def search(name: str, body: SearchBody):
        if isinstance(body, TextQuery):
            modality, kind, query = "text", "queries", body.query
        else:
            modality, kind, query = body.modality, "vectors", body.vector
        hits, used = answer((name, kind, modality, body.k, body.target, body.route, body.where), query)
        return {"query": getattr(body, "query", None), "modality": modality, "route": used,
                "results": hits_json(name, hits)}

    async def read_upload(file: UploadFile) -> bytes:
        data = await file.read(lim["max_body_bytes"] + 1)
        if not data:
            raise InputError(f"expected a non-empty file upload, got an empty {file.filename!r}")
        if len(data) > lim["max_body_bytes"]:
            raise StarletteHTTPException(413, f"expected a file of at most {lim['max_body_bytes']} bytes")
        return data

    def as_query(data: bytes, filename: str):
        """(query object, modality): an image decoded with limits, or a sound in a temporary file."""
        kind = media_modality(filename or "")
        if kind == "audio":
            suffix = Path(filename).suffix.lower()
            tmp = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)
            tmp.write(data)
            tmp.close()
            return tmp.name, "audio"
        try:
            img = open_image(data, name=filename or "the upload", max_pixels=lim["max_image_pixels"])
        except InputError as exc:
            raise InputError(f"{exc} (uploads: an image such as png, jpg or webp, or a sound such as wav, mp3, "
                             f"ogg or flac, named by its extension)") from None
        with img:
            return img.copy(), "image"

    @app.post("/collections/{name}/search/file", responses=errors(*POSTED))
    async def search_file(name: str, file: UploadFile = File(...), k: int = Form(10, **k_field),
                          target: Optional[Target] = Form(None), route: Optional[Route] = Form(None),
                          where: Optional[str] = Form(None, **where_field)):
        collection(name)
        query, modality = as_query(await read_upload(file), file.filename)
        try:  # in a worker thread: waiting for the batch must not stop the event loop
            with upload_named(query, modality, file.filename):
                hits, used = await run_in_threadpool(answer, (name, "queries", modality, k, target, route, where),
                                                     query)
        finally:
            if modality == "audio":
                os.unlink(query)
        return {"query": file.filename, "modality": modality, "route": used, "results": hits_json(name, hits)}

    @app.post("/collections/{name}/classify", responses=errors(*POSTED))
    async def classify(name: str, file: UploadFile = File(...),
                       labels: str = Form(..., pattern=r"[^,\s]", description="labels, comma or newline separated"),
                       k: int = Form(5, **k_field),
                       template: Optional[str] = Form(None, pattern=TEMPLATE_PATTERN,
                                                      description="prompt with exactly one {} for the label")):
        col = collection(name)
        # a label typed twice is meant once
        names = list(dict.fromkeys(x.strip() for x in labels.replace(",", "\n").splitlines() if x.strip()))
        if len(names) > lim["max_labels"]:
            raise InputError(f"expected 1 to {lim['max_labels']} labels (comma or newline separated), got {len(names)}")
        if template is not None:
            check_template(template)

        query, modality = as_query(await read_upload(file), file.filename)
        try:  # the refusal below is inside the try: an uploaded sound's temporary file is removed either way
            if modality != col.modality:
                a = {"image": "an image", "audio": "a sound"}
                raise UnsupportedQueryError(f"expected {a[col.modality]} file to classify in this collection, got "
                                            f"{a[modality]} file")
            with lock, upload_named(query, modality, file.filename):
                pred = col.classify([query], names, templates=[template] if template else DEFAULT_TEMPLATES,
                                    k=min(k, len(names)))[0]
        finally:
            if modality == "audio":
                os.unlink(query)
        return {"file": file.filename, **pred.to_dict()}

    @app.get("/collections/{name}/explain", responses=errors(404, 409, 422, 503))
    def explain(name: str, modality: Modality = Query("text"), target: Optional[Target] = None,
                route: Optional[Route] = None):
        p = collection(name).plan(modality, target, route)
        return dict(p.to_dict(), text=p.explain())

    MEDIA = {"image/*": {}, "audio/*": {}, "application/octet-stream": {}}

    @app.get("/collections/{name}/items/{item_id}/file", response_class=FileResponse,
             responses={200: {"content": MEDIA, "description": "the item's image or sound file"},
                        **errors(403, 404, 422, 503)})
    def item_file(name: str, item_id: int):
        col = collection(name)
        try:
            recorded = Path(col.item_path(item_id))
        except InputError as exc:
            raise StarletteHTTPException(404, str(exc))
        if not recorded.is_absolute():  # collections built before paths were stored absolute
            recorded = Path(os.path.abspath(recorded))
        if not os.path.lexists(recorded):
            raise StarletteHTTPException(404, f"item {item_id}'s file {recorded.name!r} is no longer where the "
                                              f"collection recorded it: it was moved or deleted after the build")
        real = Path(os.path.realpath(recorded))
        folder = os.path.realpath(recorded.parent)
        # a symlink that leads out of the item's own folder is not served
        if os.path.commonpath([str(real), folder]) != folder:
            raise StarletteHTTPException(403, f"item {item_id}'s file {recorded.name!r} is a link to a place outside "
                                              f"its folder; such files are not served")
        if not real.is_file():
            raise StarletteHTTPException(403, f"item {item_id}'s file {recorded.name!r} is not a regular file "
                                              f"(or its link is broken); it is not served")
        return FileResponse(str(real))

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def page():
        return (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")

    app.state.collections, app.state.batcher = cols, batcher
    return app


def server_config(app, host: str = "127.0.0.1", port: int = 8000, limits: Optional[Dict] = None, **kwargs):
    """The uvicorn configuration ``serve`` runs ``app`` with (tests run the same one)."""
    import uvicorn

    most = dict(DEFAULT_LIMITS, **(limits or {}))["max_connections"]
    return uvicorn.Config(app, host=host, port=port, timeout_keep_alive=5,
                          limit_concurrency=CONNECTION_HEADROOM * int(most), **kwargs)


def serve(folders: Sequence[str], host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          query_encoders: Optional[Dict[str, str]] = None,
          limits: Optional[Dict] = None, shard_actors: Optional[str] = None, reload_s: float = 2.0,
          batching: Optional[Dict] = None, dense_cache_mb: Optional[float] = None) -> None:
    """Start the server (blocking). Collections are named by their folder names."""
    import faulthandler

    import uvicorn

    # A fatal signal (a memory-mapped file cut short during a query: store/mapped.py) leaves a traceback
    # in the log instead of a silent exit.
    faulthandler.enable()
    names: Dict[str, str] = {}
    for f in folders:
        name = Path(f).name
        if name in names:
            raise InputError(f"expected collection folders with distinct names, got {name!r} twice")
        names[name] = str(f)
    app = create_app(names, device=device, limits=limits, shard_actors=shard_actors, query_encoders=query_encoders,
                     reload_s=reload_s, batching=batching, dense_cache_mb=dense_cache_mb)
    uvicorn.Server(server_config(app, host, port, limits)).run()
