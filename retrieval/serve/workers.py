"""Several server processes on one socket: ``retrieval serve --workers N``.

One process answers HTTP, encodes and searches under one interpreter lock; a second process on
another core does the same work beside it. uvicorn's supervisor binds the socket once, starts N
worker processes (each opens the collections itself: their files are memory-mapped, so the
operating system shares their pages; the models are loaded once per process), pings them, and
replaces one that dies. Each worker builds its app from the settings ``serve`` put in
``$RETRIEVAL_SERVE_SETTINGS`` (``server.app_from_environment``); their metrics are summed across
processes (metrics.py), and ``retrieval_worker_starts_total`` above N counts the workers replaced.
"""

import json
import os
import shutil
import tempfile
from typing import Callable, Dict, Optional

from retrieval.errors import InputError
from retrieval.serve.metrics import MULTIPROCESS_DIR

SETTINGS = "RETRIEVAL_SERVE_SETTINGS"
# The thread pools of the numerical libraries a worker loads, each sized to every core by default:
# with several workers they would oversubscribe the cores and spin against each other.
THREAD_POOLS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
APP_FACTORY = "retrieval.serve.server:app_from_environment"  # named, not imported: server imports this module


def run_workers(app_settings: Dict, workers: int, server_config: Callable, *, host: str, port: int,
                limits: Optional[Dict], access_log: bool) -> None:
    """Serve ``app_settings`` from ``workers`` processes until stopped (blocking). A worker that fails
    to start stops them all and is an error here."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors.multiprocess import Multiprocess

    # Each run sums only its own processes' values: a folder of its own, removed when it stops.
    folder = tempfile.mkdtemp(prefix="retrieval-metrics-")
    saved = {k: os.environ.get(k) for k in (SETTINGS, MULTIPROCESS_DIR) + THREAD_POOLS}
    os.environ[SETTINGS], os.environ[MULTIPROCESS_DIR] = json.dumps(app_settings), folder
    share = str(max(1, (os.cpu_count() or 1) // workers))
    for pool in THREAD_POOLS:  # a worker's share of the cores, unless the user set them
        os.environ.setdefault(pool, share)
    try:
        config = server_config(APP_FACTORY, host, port, limits, access_log=access_log, factory=True, workers=workers)
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        failed = [p.pid for p in supervisor.processes if p.exitcode == STARTUP_FAILURE]
        if failed:
            raise InputError(f"expected every worker to start, got worker(s) {failed} failing at start-up "
                             f"(their error is in the log above)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
