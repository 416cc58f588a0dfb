"""``retrieval serve --workers N``: worker processes on one port answer as one process does, their
metrics are summed, a worker that dies is replaced and counted, and the server stops cleanly.

The collection has both sides as vectors, so that the worker processes (fresh interpreters, without
the tests' fake encoders) load no model; queries come as vectors over HTTP."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from retrieval import Collection, build_collection  # noqa: E402

from .test_vectors import KW, tables  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_of(pid: int):
    """The worker processes of a server (its children that multiprocessing spawned)."""
    out = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and "spawn_main" in cmd:
            out.append(int(entry.name))
    return sorted(out)


def metric(url: str, name: str) -> float:
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(name))


def until(what, seconds: float = 60.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            got = what()
            if got:
                return got
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


@pytest.fixture
def vector_collection(tiny_data, fake_encoders, tmp_path):
    corpus, anchors = tables(tiny_data, tmp_path, text=True)
    folder = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                              text_encoder="vectors:words", cache_dir="", **KW)
    from retrieval.encoders import load_encoder

    queries = load_encoder("fake-text", "text").encode([f"a {c} thing" for c in tiny_data["colours"]])
    return folder, queries


def test_workers_answer_as_one_process_and_a_dead_one_is_replaced_and_counted(vector_collection):
    folder, queries = vector_collection
    want = [[h.id for h in hits] for hits in Collection.open(folder).search_vectors(queries, modality="text", k=3)]
    port = free_port()
    url, name = f"http://127.0.0.1:{port}", Path(folder).name
    proc = subprocess.Popen([sys.executable, "-m", "retrieval", "serve", str(folder), "--workers", "2", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    try:
        until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200 and len(workers_of(proc.pid)) == 2)

        def answers():
            return [[r["id"] for r in httpx.post(f"{url}/collections/{name}/search", timeout=30,
                                                 json={"vector": q.tolist(), "modality": "text", "k": 3}).json()["results"]]
                    for q in queries]
        for _ in range(3):  # every query answered alike, by whichever worker takes it
            assert answers() == want
        assert metric(url, "retrieval_worker_starts_total") == 2
        # the requests of both workers, summed: 3 rounds of searches
        assert metric(url, 'retrieval_requests_total{endpoint="collections",status="200"}') == 3 * len(queries)
        first = workers_of(proc.pid)
        os.kill(first[0], signal.SIGKILL)
        until(lambda: metric(url, "retrieval_worker_starts_total") == 3)
        after = until(lambda: (lambda w: w if len(w) == 2 else None)(workers_of(proc.pid)))
        assert first[0] not in after and first[1] in after
        assert answers() == want
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 0, err[-2000:]
    assert "died" in err


def test_workers_setting_is_checked_and_the_thread_pools_are_shared(tmp_path, monkeypatch, capsys):
    from retrieval.cli import main
    from retrieval.serve import server

    assert main(["serve", str(tmp_path), "--workers", "0"]) != 0
    assert "--workers to be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert [server.default_encoder_threads(n) for n in (1, 2, 4, 8, 16)] == [8, 4, 2, 1, 1]
    assert np.all(np.array([server.default_encoder_threads(n) for n in range(1, 40)]) >= 1)


def test_workers_that_cannot_start_stop_the_server_with_their_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "retrieval", "serve", str(tmp_path), "--workers", "2", "--port",
                           str(free_port())], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    assert done.returncode == 2
    assert "is not a collection built by retrieval" in done.stderr
    assert "expected every worker to start, got worker(s)" in done.stderr


def test_the_cli_refuses_zero_blas_threads(tmp_path, capsys):
    from retrieval.cli import main

    assert main(["serve", str(tmp_path), "--blas-threads", "0"]) != 0
    assert "--blas-threads to be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [[], ["--access-log"], ["--access-log", "--workers", "2"]])
def test_a_line_per_request_is_logged_only_when_asked(vector_collection, flags):
    folder, queries = vector_collection
    port = free_port()
    url, name = f"http://127.0.0.1:{port}", Path(folder).name
    proc = subprocess.Popen([sys.executable, "-m", "retrieval", "serve", str(folder), "--port", str(port), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    try:
        until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200)
        r = httpx.post(f"{url}/collections/{name}/search", json={"vector": queries[0].tolist(), "modality": "text"},
                       timeout=30)
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[0]  # uvicorn's access log goes to stdout, the rest to stderr
    assert (f'"POST /collections/{name}/search HTTP/1.1" 200' in err) == bool(flags), err[-2000:]
    assert '"GET /health HTTP/1.1" 200' in err if flags else "GET /health" not in err
