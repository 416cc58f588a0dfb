"""HTTP API and web page over the same facade as the CLI (FastAPI; ``retrieval serve``).

Safe by default: it binds to 127.0.0.1 unless told otherwise; request bodies, query lengths, k and
image sizes are bounded; uploads are decoded with limits (Pillow's decompression-bomb guard at
``max_image_pixels``); every error is JSON ``{"error": "..."}`` with a 4xx status and no stack
trace. Files are served only as items of a collection, by id: no request names a path, and an item
whose file resolves (through symlinks) outside its own folder is refused.

Models and indexes load at start-up, and again only when a collection's folder is rewritten on disk
(``live.py``: the new version is opened beside the old, which answers until the swap). Prometheus metrics count requests and time them per
endpoint, and time the query stages (encode, relativise, search) per collection.

This module composes the app from modules of one idea each, imported only here (FastAPI is an
optional dependency): ``errors`` (every error as JSON, by status), ``guard`` (in-flight, size and
time limits; request metrics), ``models`` (request bodies stated from the served collections),
``state`` (the collections, the lock and the micro-batcher), ``uploads`` and ``routes``.
"""

# No "from __future__ import annotations" in the serve modules: FastAPI reads endpoint annotations
# at run time.
import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from retrieval.api import Searchable, open_collection
from retrieval.errors import InputError
from retrieval.serve.live import LiveCollection

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
# workers: batch pipelines at once (each encodes a batch while it searches the one before, batching.py;
# two split the waiting queries into smaller batches: 467 against 543 req/s at 32 connections before the
# pipeline, results/serve/wrk-settings.md).
DEFAULT_BATCHING = {"max_wait_ms": 5.0, "max_batch": 32, "max_queue": 256, "workers": 1}
# How often a thread waiting for the interpreter's lock asks for it: 0.1 ms. The encoding thread asks for it
# back after every OpenVINO call and numpy product while the event loop and the answering thread hold it:
# 0.1 ms against 0.5 ms, 699-737 against 664-674 req/s at 32 connections, alike at 8 and 128
# (results/serve/wrk-switch-interval.md); 0.05 ms no better than 0.1 (wrk-switch-interval-2.md).
SWITCH_INTERVAL_S = 0.0001
# The BLAS library's threads in a server process (serve --blas-threads; to worker processes by the
# environment). One by default: a batch is encoded on one thread while the batch before is searched on
# another and the event loop answers HTTP, and BLAS's own threads, which spin for a while after each
# product, took the cores from them: on the demo 408 against 312 req/s at 32 connections and 607
# against 414 at 128 (results/serve/wrk-pipeline.md, --blas-threads 2 against the default); at a million items (inverted index, k = 64) 120
# against 60 req/s at 8 connections (results/serve/wrk-1m-k64.md).
BLAS_THREADS = "RETRIEVAL_BLAS_THREADS"
# uvicorn's access log (a line per request) is off unless asked for (serve --access-log): formatting and
# writing it was an eighth of the event loop's time under load (a py-spy profile at 32 connections,
# docs/serving.md); requests are counted and timed in /metrics, and errors are logged either way.
ACCESS_LOG = False
# The tokenizers library tokenizes a batch on a thread pool of its own unless told not to; a server's
# batches are a few short queries, which one thread tokenizes faster (16 queries: 0.22 against 0.27 ms,
# exploratory), and the pool's threads, like BLAS's, compete for the two cores with the encoding and
# answering threads and the event loop. Measured under wrk: 857 against 817 req/s at 32 connections,
# within the repetitions' spread (results/serve/wrk-tokenizers.md). Off in a server unless the
# environment says otherwise.
TOKENIZERS_PARALLEL = "TOKENIZERS_PARALLELISM"
DEFAULT_BLAS_THREADS = 1

log = logging.getLogger("retrieval.serve")


def default_encoder_threads(workers: int = 1) -> int:
    """Half the cores, shared among the worker processes, at least one each: an encoder on every core
    fights the event loop and the search for them, and on 2 cores its threads then wait on each other
    (results/serve/wrk-settings.md, 32 connections: 543 req/s and p99 80 ms on one thread, 485 req/s and
    p99 172 ms on two)."""
    return max(1, (os.cpu_count() or 2) // (2 * workers))


def _deps():
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise InputError("the server needs the 'serve' extra: pip install 'retrieval[serve]' "
                         "(fastapi, fastapi-offline, uvicorn, python-multipart, prometheus-client)") from exc


def create_app(collections: Dict[str, str], *, device: str = "cpu", limits: Optional[Dict] = None,
               warm: bool = True, shard_actors: Optional[str] = None, query_encoders: Optional[Dict[str, str]] = None,
               reload_s: float = 2.0, batching: Optional[Dict] = None, dense_cache_mb: Optional[float] = None,
               captions: bool = False, query_cache: Optional[int] = None, approximate=None):
    """A FastAPI app serving ``{name: collection folder}``. Sharded collections (``build --ray``)
    are searched in this process, or with ``shard_actors`` set (a Ray address; ``""`` for a local
    cluster) by Ray actors that each hold one shard. ``query_encoders`` (``{"image_encoder": SPEC}``...)
    encode queries with other encoders than the collections', stitched through their anchors.
    A collection whose folder is rewritten (build, add, reanchor, reencode) is reopened, checked at most
    every ``reload_s`` seconds (0: never). Concurrent searches are answered in micro-batches
    (``batching``: see ``DEFAULT_BATCHING``; ``max_wait_ms=0`` answers one at a time).
    ``dense_cache_mb``: the memory each collection side may keep for items' dense relative vectors
    (retrieval/core/rowcache.py; default 128; 0 keeps none). ``captions``: whether a client may give
    items captions, which rewrites their collection on disk (retrieval/serve/describe.py). ``query_cache``:
    text queries whose embeddings are kept (retrieval/serve/querycache.py; default 4096; 0 keeps none).
    ``approximate``: dense queries of the collections' inverted indexes answered approximately
    (retrieval/indexes/heads.py: True for the defaults, or a setting's spec; None: exact).

    >>> app = create_app({"emoji": "indexes/emoji-demo"})  # doctest: +SKIP
    """
    _deps()
    from functools import partial

    from fastapi_offline import FastAPIOffline  # /docs from packaged assets: Swagger UI's CDN is not reachable offline
    from pydantic import TypeAdapter

    from retrieval.serve.describe import describe_routes
    from retrieval.serve.errors import install_error_handlers
    from retrieval.serve.fastlane import install_fast_lane
    from retrieval.serve.guard import install_guard
    from retrieval.serve.metrics import Metrics
    from retrieval.serve.models import request_models
    from retrieval.serve.routes import collection_routes, query_routes, search_response
    from retrieval.serve.state import Served

    lim, bat = settings(limits, batching)
    if not collections:
        raise InputError("expected at least one collection folder to serve, got none")
    metrics = Metrics()
    metrics.starts.inc()
    opened = {name: LiveCollection(folder, opener(folder, metrics.stages.labels, name, device=device, warm=warm,
                                                  shard_actors=shard_actors, query_encoders=query_encoders,
                                                  dense_cache_mb=dense_cache_mb, approximate=approximate),
                                  every_s=reload_s)
              for name, folder in collections.items()}
    served = Served(opened, lim, bat, metrics, **({} if query_cache is None else {"query_cache": query_cache}))
    # What a request may name, from the collections served (models.py).
    first = [c.current() for c in opened.values()]
    encoders = [(m, e["dim"]) for c in first for m, e in c.manifest["encoders"].items()]
    targets = ("items",) + tuple(sorted({m for c in first for m in getattr(c, "sides", [c.modality])}))
    models = request_models(lim, encoders, targets)

    app = FastAPIOffline(title="retrieval", version="1",
                         description="Cross-modal search with encoders never trained together (ASIF relative "
                                     "representations). Every error is JSON {\"error\": message}.")
    errors = install_error_handlers(app, sorted({m for m, _ in encoders}))
    body = TypeAdapter(models.SearchBody)
    install_fast_lane(app, partial(search_response, served), body.validate_python, errors)
    install_guard(app, lim, metrics)  # added last: outermost, so the fast lane is behind its limits too
    app.include_router(collection_routes(served, models))
    app.include_router(query_routes(served, models))
    app.include_router(describe_routes(served, captions))
    app.state.collections, app.state.batcher = opened, served.batcher
    return app


def settings(limits: Optional[Dict], batching: Optional[Dict]):
    """The limits and batching settings, defaults filled in; unknown batching settings are refused."""
    unknown = set(batching or {}) - set(DEFAULT_BATCHING)
    if unknown:
        raise InputError(f"unknown batching settings {sorted(unknown)}; known: {sorted(DEFAULT_BATCHING)}")
    return dict(DEFAULT_LIMITS, **(limits or {})), dict(DEFAULT_BATCHING, **(batching or {}))


def opener(folder: str, stage, name: str, *, device: str, warm: bool, shard_actors: Optional[str],
           query_encoders: Optional[Dict[str, str]], dense_cache_mb: Optional[float],
           approximate=None) -> Callable[[], Searchable]:
    """How the collection in ``folder`` is opened, at start and on every reload: timed per query stage
    (``stage(name, stage_name)`` gives the histogram), its encoders loaded at once and its items'
    tie-break rows computed in the background when ``warm``."""
    def open_warm() -> Searchable:
        col = open_collection(folder, device=device, shard_actors=shard_actors, **(query_encoders or {}))
        col.timer = (lambda step, s: stage(name, step).observe(s))
        if dense_cache_mb is not None:
            col.dense_cache_bytes = int(dense_cache_mb * 2**20)
        if approximate is not None and not col.search_approximately(approximate):
            log.warning("--approximate: %s has no inverted index of 20,000 items or more (built with --index "
                        "inverted) to search approximately; its searches stay exact", name)
        if warm:
            for m in col.manifest["encoders"]:
                col.encoder(m)
            if hasattr(col, "fill_dense_rows"):  # (a sharded collection's shards fill theirs as they are asked)
                fill_in_background(col, name)
        return col
    return open_warm


def fill_in_background(col, name: str) -> threading.Thread:
    """The collection's tie-break rows computed beside the first queries, not before them: the time
    to a first answer counts, and filling them there lengthened it."""
    def fill():
        try:
            col.fill_dense_rows()
        except Exception as exc:  # a query that needs a row computes it, and answers with the error if any
            print(f"warning: {name}: its tie-break rows were not computed ahead: {exc}", file=sys.stderr)
    thread = threading.Thread(target=fill, name="fill-tie-break-rows", daemon=True)
    thread.start()
    return thread


def server_config(app, host: str = "127.0.0.1", port: int = 8000, limits: Optional[Dict] = None,
                  access_log: bool = ACCESS_LOG, **kwargs):
    """The uvicorn configuration ``serve`` runs ``app`` with (tests run the same one)."""
    import uvicorn

    most = dict(DEFAULT_LIMITS, **(limits or {}))["max_connections"]
    return uvicorn.Config(app, host=host, port=port, timeout_keep_alive=5, access_log=access_log,
                          limit_concurrency=CONNECTION_HEADROOM * int(most), **kwargs)


def serve(folders: Sequence[str], host: str = "127.0.0.1", port: int = 8000, device: str = "cpu",
          query_encoders: Optional[Dict[str, str]] = None,
          limits: Optional[Dict] = None, shard_actors: Optional[str] = None, reload_s: float = 2.0,
          batching: Optional[Dict] = None, dense_cache_mb: Optional[float] = None, captions: bool = False,
          encoder_threads: Optional[int] = None, query_cache: Optional[int] = None, workers: int = 1,
          blas_threads: Optional[int] = None, access_log: bool = ACCESS_LOG, approximate=None) -> None:
    """Start the server (blocking). Collections are named by their folder names. ``encoder_threads``:
    the threads exported encoders run on (default ``$RETRIEVAL_ENCODER_THREADS``, else half the cores
    shared among the workers). ``workers``: server processes on the one socket (workers.py).
    ``blas_threads``: the threads of the BLAS library's matrix products in each server process
    (default ``DEFAULT_BLAS_THREADS``). ``access_log``: a log line per request (uvicorn's access log);
    off by default, see ``ACCESS_LOG``. ``approximate``: as for :func:`create_app`, or the text
    ``serve --approximate`` takes (``"TERMS,HEAD,CANDIDATES"`` or ``"default"``)."""
    import uvicorn

    from retrieval.api import Approximate

    if isinstance(approximate, str):  # JSON for worker processes: the setting's spec
        approximate = Approximate.parse(approximate).to_spec()

    if workers < 1 or (blas_threads is not None and blas_threads < 1):
        raise InputError(f"expected at least 1 worker and 1 BLAS thread, got {workers} and {blas_threads}")
    os.environ[BLAS_THREADS] = str(blas_threads or DEFAULT_BLAS_THREADS)
    os.environ.setdefault(TOKENIZERS_PARALLEL, "false")  # see TOKENIZERS_PARALLEL (to worker processes too)
    os.environ["RETRIEVAL_ENCODER_THREADS"] = str(encoder_threads or os.environ.get("RETRIEVAL_ENCODER_THREADS")
                                                  or default_encoder_threads(workers))
    names: Dict[str, str] = {}
    for f in folders:
        name = Path(f).name
        if name in names:
            raise InputError(f"expected collection folders with distinct names, got {name!r} twice")
        names[name] = str(f)
    app_settings = dict(collections=names, device=device, limits=limits, shard_actors=shard_actors,
                        query_encoders=query_encoders, reload_s=reload_s, batching=batching,
                        dense_cache_mb=dense_cache_mb, captions=captions, query_cache=query_cache,
                        approximate=approximate)
    if workers > 1:
        from retrieval.serve.workers import run_workers

        run_workers(app_settings, workers, server_config, host=host, port=port, limits=limits, access_log=access_log)
        return
    app = create_app(**app_settings)
    tune_process()
    uvicorn.Server(server_config(app, host, port, limits, access_log=access_log)).run()


def app_from_environment():
    """uvicorn's app factory in a worker process (workers.py): the app ``serve`` described in
    ``$RETRIEVAL_SERVE_SETTINGS``. A worker that cannot build it says why once and exits with uvicorn's
    start-up failure status, so that the supervisor stops instead of starting it again and again."""
    import json

    from uvicorn.config import STARTUP_FAILURE

    from retrieval.serve.workers import SETTINGS

    try:
        app = create_app(**json.loads(os.environ[SETTINGS]))
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    tune_process()
    return app


def tune_process() -> None:
    """Settings of a server process, once its collections are open."""
    import faulthandler

    # A fatal signal (a memory-mapped file cut short during a query: store/mapped.py) leaves a traceback
    # in the log instead of a silent exit.
    faulthandler.enable()
    # The micro-batcher's thread gives the GIL up in every encoder call and numpy product, and must win it
    # back from the event loop each time; at Python's default 5 ms interval that wait was most of a batch's.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # What start-up made (models, tables, modules: millions of objects) lives as long as the server; kept
    # out of the garbage collector's sweeps, whose full passes over it stalled requests (seen as p99 spikes
    # in exploratory wrk runs; not a setting, so not in results/).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # a request makes thousands of short-lived objects: sweep less often
    if os.environ.get(BLAS_THREADS):
        from threadpoolctl import threadpool_limits

        threadpool_limits(int(os.environ[BLAS_THREADS]), user_api="blas")  # for as long as the process lives
