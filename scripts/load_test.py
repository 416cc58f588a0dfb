"""Bounded load test of `retrieval serve`, on loopback only: C concurrent clients for S seconds (at
most N requests), text searches against a served collection. Reports errors, latency percentiles
and throughput, and writes them as Markdown.

    retrieval serve indexes/emoji-demo --port 8765 &
    python scripts/load_test.py --url http://127.0.0.1:8765 --collection emoji-demo \\
        --clients 32 --seconds 20 --max-requests 5000 --out results/serve/README.md
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import report  # noqa: E402

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8765")
    ap.add_argument("--collection", default="emoji-demo")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    host = urlparse(a.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"refusing to load-test {host}: loopback only", file=sys.stderr)
        return 2
    lat, errors, statuses, wall = asyncio.run(run(a.url, a.collection, a.clients, a.seconds, a.max_requests, a.k))
    ms = np.array(lat) * 1e3
    text = "\n".join([
        f"Load test: {a.clients} concurrent clients, {a.seconds:g} s, at most {a.max_requests} requests, text search "
        f"(k={a.k}) on `{a.collection}`, loopback.", "",
        f"Command: `python scripts/load_test.py {' '.join(sys.argv[1:] if argv is None else argv)}`", "",
        "| requests | errors | statuses | throughput (req/s) | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
        f"| {len(lat)} | {len(errors)} | {statuses} | {len(lat) / wall:.1f} | {np.percentile(ms, 50):.0f} | "
        f"{np.percentile(ms, 90):.0f} | {np.percentile(ms, 99):.0f} | {ms.max():.0f} |"])
    report([text], a.out, {"clients": a.clients, "requests": len(lat), "errors": len(errors), "statuses": statuses,
                           "throughput_per_s": len(lat) / wall, "p50_ms": float(np.percentile(ms, 50)),
                           "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
                           "max_ms": float(ms.max())})
    for e in errors[:5]:
        print("error:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
