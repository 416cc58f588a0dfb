"""Build overhead: what a build costs on top of encoding, with the default encoders, on real data.

Builds the demo's emoji collection (Noto anchors, Twemoji corpus) with an empty anchor cache and
reads the per-stage seconds the build records in its manifest (`timings`). Overhead is everything
that is not encoding or model loading (checking files, relativising, indexing, writing, checksums),
as a share of the encoding time, all from the same run.

    python scripts/bench_build.py --out results/bench/build.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from retrieval.evaluation.benchlib import report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="indexes/.emoji-data")
    ap.add_argument("--index", default="exact,inverted")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    from retrieval import build_collection
    from retrieval.datasets import emoji
    from retrieval.store.format import read_manifest

    paths = emoji.prepare(a.data, show_progress_bar=False)
    lines = [f"Build overhead on the emoji demo data ({a.data}), default encoders, empty anchor cache, "
             f"{os.cpu_count()} CPU cores.", "",
             f"Command: `python scripts/bench_build.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(), "",
             "| index | items | encode (anchors + corpus) s | load models s | check files s | relativise s | "
             "write + checksums s | overhead / encoding |", "|---|---|---|---|---|---|---|---|"]
    data = {"rows": []}
    for index in a.index.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            out = build_collection(paths["corpus"], paths["anchors"], Path(tmp) / "col", index=index,
                                   cache_dir=str(Path(tmp) / "cache"), show_progress_bar=False)
            total = time.perf_counter() - t
            m = read_manifest(out, verify=False)
            tm = m["timings"]
            encode = tm["encode_anchors"] + tm["encode_corpus"]
            write_all = total - sum(tm.values()) + tm["write"]  # the write stage plus checksums and rename
            overhead = tm["check_files"] + tm["relativise"] + write_all
            lines.append(f"| {index} | {m['counts']['items']} | {encode:.1f} | {tm['load_models']:.1f} | "
                         f"{tm['check_files']:.1f} | {tm['relativise']:.2f} | {write_all:.2f} | "
                         f"{overhead / encode:.1%} |")
            print(lines[-1], flush=True)
            data["rows"].append({"index": index, "items": m["counts"]["items"], "encode_s": encode,
                                 "load_models_s": tm["load_models"], "check_files_s": tm["check_files"],
                                 "relativise_s": tm["relativise"], "write_s": write_all,
                                 "overhead_over_encoding": overhead / encode})
    report(lines, a.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
