"""Commands that run something beside a collection: serve, eval, demo."""

from __future__ import annotations

import sys

from retrieval.cli.query_cmds import add_query_encoder_options, query_encoders
from retrieval.errors import InputError


def cmd_serve(a) -> int:
    from retrieval.serve.server import serve

    for flag, value, least in (("--batch-wait-ms", a.batch_wait_ms, 0), ("--batch-size", a.batch_size, 1),
                               ("--queue", a.queue, 1), ("--dense-cache-mb", a.dense_cache_mb, 0),
                               ("--max-connections", a.max_connections, 1), ("--batch-workers", a.batch_workers, 1),
                               ("--encoder-threads", 1 if a.encoder_threads is None else a.encoder_threads, 1),
                               ("--query-cache", a.query_cache, 0), ("--workers", a.workers, 1),
                               ("--blas-threads", 1 if a.blas_threads is None else a.blas_threads, 1)):
        if not value >= least:
            raise InputError(f"expected {flag} to be at least {least}, got {value}")
    if not a.reload_every >= 0:
        raise InputError(f"expected --reload-every to be 0 (never) or a number of seconds, got {a.reload_every}")
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {a.host}: anyone who can reach this address can query the collections",
              file=sys.stderr)
    serve(a.index, host=a.host, port=a.port, device=a.device, shard_actors=a.ray, query_encoders=query_encoders(a),
          limits={"max_body_bytes": a.max_body_mb * 1024 * 1024, "max_k": a.max_k, "request_timeout_s": a.timeout,
                  "max_connections": a.max_connections},
          reload_s=a.reload_every,
          batching={"max_wait_ms": a.batch_wait_ms, "max_batch": a.batch_size, "max_queue": a.queue,
                    "workers": a.batch_workers},
          dense_cache_mb=a.dense_cache_mb, captions=a.allow_captions, encoder_threads=a.encoder_threads,
          query_cache=a.query_cache, workers=a.workers, blas_threads=a.blas_threads, access_log=a.access_log,
          approximate=a.approximate)
    return 0


def cmd_eval(a) -> int:
    from retrieval.evaluation import run_suite

    folder, _ = run_suite(a.suite, a.out, show_progress_bar=a.progress,
                          command=f"retrieval eval --suite {a.suite}" + (f" --out {a.out}" if a.out != "results" else "")
                          + (f" --runtime {a.runtime}" if getattr(a, "runtime", None) else ""))
    print(f"wrote {folder / 'README.md'}")
    return 0


def cmd_demo(a) -> int:
    from retrieval.cli.demo import run_demo

    return run_demo(out=a.out, data=a.data, limit=a.limit, show_progress_bar=a.progress)


def add_parsers(sub, common) -> None:
    """The subcommands of this module, on ``sub``; ``common(sp)`` adds the options every command shares."""
    sv = sub.add_parser("serve", help="HTTP API and web page over one or more collections (FastAPI)")
    sv.add_argument("index", nargs="+", help="collection folders; each is served under its folder name")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-body-mb", type=int, default=10, help="largest request body or upload (default 10 MB)")
    sv.add_argument("--max-k", type=int, default=100, help="largest k a request may ask for (default 100)")
    sv.add_argument("--timeout", type=float, default=30.0, help="seconds before a request is answered 503 (default 30)")
    sv.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                    help="gather concurrent searches for at most this long and answer them together "
                         "(default 5; 0: one at a time)")
    sv.add_argument("--batch-size", type=int, default=32, help="most searches answered together (default 32)")
    sv.add_argument("--batch-workers", type=int, default=1, metavar="N",
                    help="batch pipelines at once (each encodes a batch while it searches the one before); "
                         "more than 1 splits the waiting queries into smaller batches, for more cores (default 1)")
    sv.add_argument("--encoder-threads", type=int, default=None, metavar="N",
                    help="threads an exported encoder (ONNX Runtime, OpenVINO) runs on (default: "
                         "$RETRIEVAL_ENCODER_THREADS, else half the cores, at least 1: the rest answer requests "
                         "and search)")
    sv.add_argument("--workers", type=int, default=1, metavar="N",
                    help="server processes on the one port, each with its own models, collections mapped once, "
                         "a worker that dies replaced (default 1)")
    sv.add_argument("--blas-threads", type=int, default=None, metavar="N",
                    help="threads of the BLAS library's matrix products in each server process (default 1: the "
                         "encoding and searching threads and the event loop need the other cores)")
    sv.add_argument("--approximate", nargs="?", const="default", default=None, metavar="TERMS,HEAD,CANDIDATES",
                    help="answer the dense queries of large inverted indexes approximately: from the query's TERMS "
                         "heaviest anchors, of each the HEAD share of the items weighing most, CANDIDATES of them "
                         "scored exactly (default 16,0.02,1024: recall@10 0.9965 and 3.8 x faster at a million items, "
                         "docs/performance.md); without it every search is exact")
    sv.add_argument("--query-cache", type=int, default=4096, metavar="N",
                    help="text queries whose embeddings are kept, so that a query asked again is not encoded "
                         "again (default 4096; 0: none)")
    sv.add_argument("--queue", type=int, default=256,
                    help="most searches waiting; beyond it a request is answered 503 with Retry-After (default 256)")
    sv.add_argument("--max-connections", type=int, default=512, metavar="N",
                    help="most requests in flight at once; beyond it a request is answered 503 (JSON, with "
                         "Retry-After) at once; open connections, idle ones included, are capped at twice it "
                         "(default 512: twice --queue's default)")
    sv.add_argument("--dense-cache-mb", type=float, default=128.0, metavar="MB",
                    help="memory a collection may keep for items' dense relative vectors, which break ties and are "
                         "otherwise recomputed for every query (default 128; 0 keeps none)")
    sv.add_argument("--reload-every", type=float, default=2.0, metavar="SECONDS",
                    help="look for collections rewritten on disk (build, add, reanchor, reencode) at most this "
                         "often, and reopen them while the old ones answer (default 2; 0: never)")
    sv.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="hold each shard of a sharded collection in a Ray actor (on the cluster at ADDRESS, or a "
                         "local one) instead of in this process")
    sv.add_argument("--access-log", action="store_true",
                    help="log a line per request (uvicorn's access log); off by default: under load it took an "
                         "eighth of the event loop's time, and /metrics counts and times every request")
    sv.add_argument("--allow-captions", action="store_true",
                    help="let the web page (and POST /collections/NAME/captions) give items captions, rewriting "
                         "the collection on disk as 'retrieval caption' does; off by default: the server writes "
                         "nothing")
    common(sv)
    sv.set_defaults(func=cmd_serve)
    add_query_encoder_options(sv)

    from retrieval.evaluation import SUITES

    e = sub.add_parser("eval", help="run an evaluation suite on real offline data; writes results/NAME/",
                       epilog="suites: " + "; ".join(f"{s.name}: {s.summary}" for s in SUITES.values()))
    e.add_argument("--suite", required=True, help="one of: " + ", ".join(SUITES))
    e.add_argument("--out", default="results", help="results folder (default results/)")
    common(e, device=False)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="build the embedded emoji demo offline and run a few queries")
    d.add_argument("--out", default="indexes/emoji-demo")
    d.add_argument("--data", default="indexes/.emoji-data", help="where the rendered demo data goes")
    d.add_argument("--limit", type=int, default=None, help="use only N concepts (quick look)")
    common(d, device=False)
    d.set_defaults(func=cmd_demo)
