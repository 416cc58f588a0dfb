"""Bounded load test of `retrieval serve`, on loopback only: C concurrent clients for S seconds (at
most N requests), text searches against a served collection. Reports errors, latency percentiles
and throughput, and writes them as Markdown.

Against a running server:

    retrieval serve indexes/emoji-demo --port 8765 &
    python scripts/load_test.py --url http://127.0.0.1:8765 --collection emoji-demo \\
        --clients 32 --seconds 20 --max-requests 5000 --out results/serve/README.md

Or, with ``--compare INDEX``, in one run: the script starts `retrieval serve INDEX` itself three
times: as the server was before this work (torch eager encoders, no cache of items' dense relative
vectors, one query at a time), one query at a time as it is now, and with its default
micro-batching; loads each the same way, checks that all give the same answers to every query, and
reports the throughput ratios:

    python scripts/load_test.py --compare indexes/emoji-demo --out results/serve/load.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from retrieval.evaluation.benchlib import report

QUERIES = ["an emoji of a red apple", "an emoji of a dog face", "an emoji of a rocket", "an emoji of a birthday cake",
           "an emoji of the flag of Japan", "an emoji of a cat", "an emoji of a smiling face", "an emoji of a tree",
           "an emoji of a car", "an emoji of a musical note", "an emoji of rain", "an emoji of a heart"]


async def run(url: str, collection: str, clients: int, seconds: float, cap: int, k: int):
    import httpx

    latencies, errors, statuses = [], [], {}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(i: int):
        nonlocal sent
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            while time.perf_counter() < deadline and sent < cap:
                sent += 1
                q = QUERIES[sent % len(QUERIES)]
                t = time.perf_counter()
                try:
                    r = await client.post(f"/collections/{collection}/search", json={"query": q, "k": k})
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code != 200 or not r.json().get("results"):
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return latencies, errors, statuses, time.perf_counter() - start


def start_server(index: str, extra) -> tuple:
    """(process, url) of `retrieval serve INDEX` on a free loopback port, once it answers /health."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-c", "import sys; from retrieval.cli import main; sys.exit(main())", "serve", index,
           "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not answer /health within 600 s")


def answers(url: str, collection: str, k: int):
    import httpx

    return [[h["id"] for h in httpx.post(f"{url}/collections/{collection}/search", json={"query": q, "k": k},
                                         timeout=60).json()["results"]] for q in QUERIES]


def measure(url, a):
    lat, errors, statuses, wall = asyncio.run(run(url, a.collection, a.clients, a.seconds, a.max_requests, a.k))
    ms = np.array(lat) * 1e3
    row = {"requests": len(lat), "errors": len(errors), "statuses": statuses, "throughput_per_s": len(lat) / wall,
           "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
           "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    return row


def table_row(name, r):
    return (f"| {name}{r['requests']} | {r['errors']} | {r['statuses']} | {r['throughput_per_s']:.1f} | "
            f"{r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {r['max_ms']:.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8765")
    ap.add_argument("--compare", metavar="INDEX", help="serve INDEX here, one at a time and micro-batched, and compare")
    ap.add_argument("--collection", default=None, help="the served collection (default: the --compare folder's name, "
                                                       "else emoji-demo)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    a.collection = a.collection or (Path(a.compare).name if a.compare else "emoji-demo")
    cmd = f"Command: `python scripts/load_test.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
    head = (f"Load test: {a.clients} concurrent clients, {a.seconds:g} s, at most {a.max_requests} requests, text "
            f"search (k={a.k}) on `{a.collection}`, loopback, {os.cpu_count()} CPU cores (the clients run on the "
            f"same machine).")
    cols = ["| requests | errors | statuses | throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|---|---|"]
    if not a.compare:
        host = urlparse(a.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"refusing to load-test {host}: loopback only", file=sys.stderr)
            return 2
        r = measure(a.url, a)
        report([head, "", cmd, "", *cols, table_row("", r)], a.out, dict(r, clients=a.clients))
        return 1 if r["errors"] else 0
    rows, ids = {}, {}
    modes = (("as before", ["--runtime", "torch", "--dense-cache-mb", "0", "--batch-wait-ms", "0"]),
             ("one at a time", ["--batch-wait-ms", "0"]), ("micro-batched", []))
    for mode, extra in modes:
        proc, url = start_server(a.compare, extra)
        try:
            answers(url, a.collection, a.k)  # warm-up
            ids[mode] = answers(url, a.collection, a.k)
            rows[mode] = measure(url, a)
        finally:
            proc.terminate()
            proc.wait(30)
    before, one, many = rows["as before"], rows["one at a time"], rows["micro-batched"]
    same = sum(x == y for x, y in zip(ids["one at a time"], ids["micro-batched"]))  # batching alone
    same_before = sum(x == y for x, y in zip(ids["as before"], ids["one at a time"]))  # the encoder runtime
    ratio, ratio_before = (many["throughput_per_s"] / r["throughput_per_s"] for r in (one, before))
    lines = [head, "", cmd, "", "| mode " + cols[0], "|---" + cols[1],
             table_row("as before: torch encoders, no dense-vector cache, one at a time "
                       "(`--runtime torch --dense-cache-mb 0 --batch-wait-ms 0`) | ", before),
             table_row("one at a time (`--batch-wait-ms 0`) | ", one),
             table_row("micro-batched (default: `--batch-wait-ms 5 --batch-size 32`) | ", many), "",
             f"Throughput micro-batched / as before: **{ratio_before:.2f} x**; micro-batched / one at a time: "
             f"**{ratio:.2f} x**. p99 micro-batched {many['p99_ms']:.0f} ms against p50 as before "
             f"{before['p50_ms']:.0f} ms. The same top {a.k} ids micro-batched and one at a time for {same} of "
             f"{len(QUERIES)} queries; now and as before (torch encoders) for {same_before} of {len(QUERIES)}."]
    report(lines, a.out, {"clients": a.clients, "rows": rows, "throughput_ratio": ratio,
                          "throughput_ratio_to_before": ratio_before, "same_answers": same,
                          "same_answers_as_before": same_before, "queries": len(QUERIES)})
    return 1 if any(r["errors"] for r in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
