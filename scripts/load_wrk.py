"""The server under load, measured with ``wrk`` (a C load generator: its cost is small beside the
server's), beside the encoder's own limit and the server's per-stage timings, in one run.

The script starts ``retrieval serve INDEX`` on a free loopback port, times the first answer, warms
it, then for each connection count (1, 8, 32, 128 by default) runs wrk for a fixed time with text
searches that are all different (captions of the collection under templates and modifiers: no
answer cache can flatter the figures), and reads the server's Prometheus metrics before and after
each run, so that each row says where a query's time went. Before the server starts, the encoder
alone encodes the same queries in batches of the server's batch size, in this process: the most
text queries a second these cores can embed, the limit a server could reach.

    python scripts/load_wrk.py indexes/emoji-demo --out results/serve/wrk.md

``--before DIR`` also serves the collection from another checkout of this repository (a git
worktree of an older commit) first, loaded the same way, for a before/after table from one run;
``--variant "ARGS"`` (repeatable) serves it again with other ``serve`` settings, to choose them.
Every server is started (one after another, each timed to its first answer) before any is measured,
and their rows are interleaved: each connection count is run against each server in turn, so that
cores that slow down for a while (they are shared) slow every server alike. ``--repeat N`` runs
everything N times (the encoder's limit too); each row is then the run with the median throughput.
``--ceilings`` then measures what each server answers without its encoder: ``GET /health`` and the
same few searches again and again (answered from the query cache). Only loopback is ever addressed; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from retrieval.evaluation.benchlib import report

TEMPLATES = ("{}", "a picture of {}", "an emoji of {}", "{} icon", "a drawing of {}")
MODIFIERS = ("", "red ", "small ", "happy ", "old ", "blue ", "big ", "green ", "dark ", "tiny ", "bright ",
             "yellow ", "round ", "cute ", "sad ", "shiny ", "white ", "black ", "striped ", "wooden ")
WARM = 200  # queries sent before the runs (the runs' queries come after them)
STAGES = ("wait", "encode", "captions", "relativise", "search", "labels", "respond")
DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"socket_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"seconds":%.3f}\n', summary.requests,
    e.connect + e.read + e.write, e.status, e.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, summary.duration / 1e6))
end
"""
LUA = r"""
local queries = {QUERIES}
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
end
local first, step, n = 0, 1, 0
init = function(args)
  -- thread id of threads, from args[1] on: each request a query no thread and no earlier run has sent
  first = tonumber(args[1]) + tonumber(id) - 1
  step = tonumber(args[2])
end
request = function()
  local q = queries[((first + n * step) % #queries) + 1]
  n = n + 1
  return wrk.format("POST", "{PATH}", {["Content-Type"] = "application/json"}, q)
end
"""


def queries(captions: List[str], n: int, seed: int = 0) -> List[str]:
    """``n`` distinct query texts made from the collection's own captions."""
    rng = random.Random(seed)
    base = sorted({" ".join(c.split()) for c in captions if c.strip()})
    seen, out = set(), []
    for _ in range(50 * n):
        if len(out) >= n:
            break
        q = rng.choice(TEMPLATES).format(rng.choice(MODIFIERS) + rng.choice(base))
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def lua_script(texts: List[str], path: str, k: int) -> str:
    bodies = ",\n".join(lua_string(json.dumps({"query": t, "k": k})) for t in texts)
    return LUA.replace("{QUERIES}", "{\n" + bodies + "\n}").replace("{PATH}", path) + DONE


def lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encoder_limit(index: str, texts: List[str], batch: int, seconds: float) -> Dict:
    """Text queries a second the collection's text encoder embeds alone, in batches of ``batch``."""
    from retrieval.api import open_collection

    enc = open_collection(index).encoder("text")
    enc.encode(texts[:batch], batch_size=batch)  # warm
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and done + batch <= len(texts):
        enc.encode(texts[done:done + batch], batch_size=batch)
        done += batch
    wall = time.perf_counter() - t0
    return {"queries": done, "seconds": wall, "per_s": done / wall, "ms_per_query": 1e3 * wall / done}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(index: str, checkout: Optional[str], extra: List[str], first_query: str) -> tuple:
    """(process, url, seconds to the first answer) of `retrieval serve INDEX` from ``checkout``."""
    import httpx

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(checkout).resolve())) if checkout else dict(os.environ)
    cmd = [sys.executable, "-c", "import sys; from retrieval.cli import main; sys.exit(main())", "serve", index,
           "--port", str(port), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                            cwd=checkout or None)
    url, name = f"http://127.0.0.1:{port}", Path(index).name
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            r = httpx.post(f"{url}/collections/{name}/search", json={"query": first_query, "k": 10}, timeout=30)
            if r.status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not answer within 300 s")


def scrape(url: str) -> Dict[str, float]:
    """The server's stage and request histograms' sums and counts, by name."""
    import httpx

    out = {}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        hit = re.match(r'retrieval_query_cache_total\{result="(\w+)"\} (\S+)', line)
        if hit:
            out[f"cache:{hit.group(1)}"] = float(hit.group(2))
        m = re.match(r'retrieval_(stage_seconds|request_seconds|batch_queries)_(sum|count)\{(.*)\} (\S+)', line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3)))
            key = labels.get("stage") or labels.get("endpoint") or "batch"
            out[f"{m.group(1)}:{key}:{m.group(2)}"] = float(m.group(4))
    return out


def run_wrk(url: str, script: str, connections: int, seconds: float, first: int) -> Dict:
    """One wrk run; its queries start at ``first`` in the script's list."""
    threads = max(1, min(connections, 2))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", script, url,
           "--", str(first), str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    r = json.loads(line[len("RESULT "):])
    r["per_s"] = r["requests"] / r["seconds"]
    return r


def breakdown(before: Dict[str, float], after: Dict[str, float]) -> Dict:
    """Mean ms a query spent in each stage during a run, and the mean batch."""
    d = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    queries = d.get("batch_queries:batch:sum", 0.0)
    out = {"batches": d.get("batch_queries:batch:count", 0.0), "queries": queries}
    out["mean_batch"] = queries / out["batches"] if out["batches"] else float("nan")
    out["cache_hits"] = d.get("cache:hit", 0.0)  # text queries answered from the embedding cache
    for s in STAGES:
        # a stage observed once per batch is shared by its queries; 'wait' and 'respond' once per query
        out[s] = 1e3 * d.get(f"stage_seconds:{s}:sum", 0.0) / queries if queries else float("nan")
    return out


def started(label: str, a, checkout: Optional[str], texts: List[str], extra: List[str]) -> Dict:
    """A server started, timed to its first answer and warmed; its runs are added by :func:`run_row`."""
    import httpx

    proc, url, first_answer = start(a.index, checkout, extra, texts[0])
    with httpx.Client(timeout=30) as client:  # one client: a new one per request made a TLS context each time
        for t in texts[1:WARM]:  # warm: the caches a long-running server has filled
            client.post(f"{url}/collections/{Path(a.index).name}/search", json={"query": t, "k": a.k})
    return {"label": label, "first_answer_s": first_answer, "runs": {}, "proc": proc, "url": url, "first": WARM}


def run_row(server: Dict, a, texts: List[str], script: str, c: int) -> None:
    """One wrk run of ``c`` connections against ``server``, with queries it has not been sent yet."""
    m0 = scrape(server["url"])
    r = run_wrk(server["url"], script, c, a.seconds, server["first"])
    # past every query sent: a thread may have sent them all (and those in flight at the end)
    server["first"] += min(c, 2) * (r["requests"] + c)
    if server["first"] > len(texts):
        raise RuntimeError(f"the runs used more than the {len(texts)} distinct queries: fewer seconds")
    r.update(connections=c, stages=breakdown(m0, scrape(server["url"])))
    server["runs"].setdefault(c, []).append(r)
    print(f"{server['label']} c={c}: {r['per_s']:.0f} req/s p50 {r['p50']:.1f} p99 {r['p99']:.1f} ms", file=sys.stderr)


def measure_all(servers: List[Dict], a, texts: List[str], script: str, limits: List[Dict]) -> None:
    """Every server's rows, interleaved: for each repetition and connection count, each server in turn,
    so that shared cores that slow down for a while slow every server alike; the encoder's limit is
    measured again before each repetition."""
    for rep in range(a.repeat):
        if rep:
            limits.append(encoder_limit(a.index, texts, a.batch, a.limit_seconds))
        for c in a.connections:
            for server in servers:
                run_row(server, a, texts, script, c)


REPEATED = 64  # the queries of the cached-search ceiling, sent again and again


def ceilings(server: Dict, a, texts: List[str], tmp: str) -> List[Dict]:
    """What ``server`` answers without its encoder, at the most connections: ``GET /health`` (the HTTP
    stack and wrk alone) and the same few searches again and again (answered from the query cache once
    asked: everything a search costs but the encoder)."""
    health, repeated = str(Path(tmp) / "health.lua"), str(Path(tmp) / "repeated.lua")
    Path(health).write_text(DONE)
    Path(repeated).write_text(lua_script(texts[:REPEATED], f"/collections/{Path(a.index).name}/search", a.k))
    c, out = max(a.connections), []
    for what, url, script in (("GET /health", server["url"] + "/health", health),
                              (f"the same {REPEATED} searches again and again", server["url"], repeated)):
        m0 = scrape(server["url"])
        r = run_wrk(url, script, c, a.seconds, 0)
        r.update(what=what, connections=c, stages=breakdown(m0, scrape(server["url"])))
        out.append(r)
        print(f"{server['label']} {what}: {r['per_s']:.0f} req/s", file=sys.stderr)
    return out


def ceiling_table(runs: List[Dict]) -> List[str]:
    lines = ["Without the encoder, after the rows above (`--ceilings`):", "",
             "| server | requests | connections | req/s | p50 ms | p99 ms | errors | searches answered from the query cache |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        for r in run.get("ceilings", []):
            st = r["stages"]
            cached = f"{st['cache_hits'] / st['queries']:.2f}" if st["queries"] else "-"
            lines.append(f"| {run['label']} | {r['what']} | {r['connections']} | {r['per_s']:.0f} | {r['p50']:.1f} | "
                         f"{r['p99']:.1f} | {r['socket_errors'] + r['status_errors']} | {cached} |")
    return lines + [""]


def summary(server: Dict) -> Dict:
    """A server's rows, each the run with the median throughput among its repetitions (of an even number,
    the lower middle one); its memory."""
    rows = []
    for c, runs in server["runs"].items():
        mid = sorted(runs, key=lambda r: r["per_s"])[(len(runs) - 1) // 2]
        rows.append(dict(mid, repeats=[round(r["per_s"], 1) for r in runs]))
    return {"label": server["label"], "first_answer_s": server["first_answer_s"], "rows": rows,
            "memory": resident(server["proc"].pid), "ceilings": server.get("ceilings", [])}


def resident(pid: int) -> Dict[str, float]:
    """The server's resident memory now and at its peak, in GiB, summed over its process and its worker
    processes (Linux /proc; mapped file pages each touched count in each, so shared pages count twice)."""
    def status(p):
        text = Path(f"/proc/{p}/status").read_text()
        return [float(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) for k in ("VmRSS", "VmHWM")]

    pids = [pid] + [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _parent(e) == pid]
    kib = np.sum([status(p) for p in pids], axis=0)
    return {"rss_gib": kib[0] / 2**20, "peak_gib": kib[1] / 2**20, "processes": len(pids)}


def _parent(entry: Path) -> Optional[int]:
    try:
        return int(((entry / "stat").read_text()).rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def table(run: Dict, limit: Dict) -> List[str]:
    mem = run["memory"]
    lines = [f"**{run['label']}**: first answer {run['first_answer_s']:.2f} s after `retrieval serve` started; "
             f"resident memory after the runs {mem['rss_gib']:.2f} GiB (peak {mem['peak_gib']:.2f} GiB; "
             f"{mem.get('processes', 1)} process(es) summed).", "",
             "| connections | req/s | each repetition's req/s | share of encoder limit | p50 ms | p90 ms | p99 ms | max ms | errors | mean batch | "
             "cache hits | " + " | ".join(f"{s} ms/q" for s in STAGES) + " |",
             "|---" * (11 + len(STAGES)) + "|"]
    for r in run["rows"]:
        st = r["stages"]
        errors = r["socket_errors"] + r["status_errors"]
        lines.append(f"| {r['connections']} | {r['per_s']:.0f} | {', '.join(f'{x:.0f}' for x in r['repeats'])} | "
                     f"{r['per_s'] / limit['per_s']:.2f} | {r['p50']:.1f} | "
                     f"{r['p90']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {errors} | {st['mean_batch']:.1f} | "
                     f"{st['cache_hits']:.0f} | "
                     + " | ".join("-" if np.isnan(st[s]) or st[s] == 0 else f"{st[s]:.2f}" for s in STAGES) + " |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("index", nargs="?", default="indexes/emoji-demo")
    ap.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 128])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--limit-seconds", type=float, default=10.0, help="how long the encoder alone is timed")
    ap.add_argument("--batch", type=int, default=32, help="the server's batch size (serve --batch-size)")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--before", metavar="CHECKOUT", help="also serve from this checkout (an older commit), first")
    ap.add_argument("--server-args", default="", help="more arguments for retrieval serve, one string")
    ap.add_argument("--variant", action="append", default=[], metavar="ARGS",
                    help="also serve with these serve arguments (one string), after the default; repeatable")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each row, interleaved across the servers; a row reports the median (default 1)")
    ap.add_argument("--ceilings", action="store_true",
                    help="then, at the most connections, GET /health and the same few searches again and again "
                         "(answered from the query cache): what each server answers without its encoder")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    a.server_args, a.index = a.server_args.split(), str(Path(a.index).resolve())
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (Debian's package)", file=sys.stderr)
        return 2
    from retrieval.api import open_collection

    if a.repeat < 1:
        print(f"expected --repeat of at least 1, got {a.repeat}", file=sys.stderr)
        return 2
    texts = queries(open_collection(a.index).texts["text"], 40000 * a.repeat)
    limits = [encoder_limit(a.index, texts, a.batch, a.limit_seconds)]
    print(f"encoder alone: {limits[0]['per_s']:.0f} queries/s", file=sys.stderr)
    servers: List[Dict] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = str(Path(tmp) / "search.lua")
            Path(script).write_text(lua_script(texts, f"/collections/{Path(a.index).name}/search", a.k))
            if a.before:
                servers.append(started(f"before ({a.before})", a, a.before, texts, a.server_args))
            servers.append(started("now", a, None, texts, a.server_args))
            for v in a.variant:  # the same server with other settings, in the same run
                servers.append(started(f"now with `{v}`", a, None, texts, a.server_args + v.split()))
            measure_all(servers, a, texts, script, limits)
            for server in servers if a.ceilings else []:
                server["ceilings"] = ceilings(server, a, texts, tmp)
            runs = [summary(s) for s in servers]
    finally:
        for server in servers:
            server["proc"].terminate()
            server["proc"].wait(30)
    limit = sorted(limits, key=lambda x: x["per_s"])[(len(limits) - 1) // 2]
    each = ", ".join(f"{x['per_s']:.0f}" for x in limits)
    cmd = f"Command: `python scripts/load_wrk.py {shlex.join(sys.argv[1:] if argv is None else argv)}`"
    head = (f"Text search (k={a.k}) on `{Path(a.index).name}` under wrk, {a.seconds:g} s per row, loopback, "
            f"{os.cpu_count()} CPU cores shared by server and wrk; {len(texts)} distinct queries from the "
            f"collection's captions. Encoder alone, batches of {a.batch}, same queries, same run: "
            f"**{limit['per_s']:.0f} queries/s** ({limit['ms_per_query']:.2f} ms a query"
            + (f"; the median of {len(limits)} measurements, one before each repetition: {each}" if len(limits) > 1
               else "") + ").")
    lines = [head, "", cmd, ""]
    for run in runs:
        lines += table(run, limit) + [""]
    if a.ceilings:
        lines += ceiling_table(runs)
    lines.append("Stages are the server's own histograms (`/metrics`, `retrieval_stage_seconds`) over the run, "
                 "per query: `wait` from a query's arrival at the micro-batcher to its batch's start, the batch "
                 "stages shared by its queries, `respond` the hits made JSON.")
    report(lines, a.out, {"encoder_limit": limit, "encoder_limits": limits, "runs": runs, "seconds": a.seconds,
                          "repeat": a.repeat})
    return 1 if any(r["socket_errors"] + r["status_errors"] for run in runs for r in run["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
