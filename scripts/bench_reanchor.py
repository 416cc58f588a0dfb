"""Reanchoring against a fresh build: what swapping the anchors costs when the corpus is not encoded again.

On the demo's emoji data (Twemoji corpus, default encoders): a collection is built with the Noto
anchors (one drawing a concept), then given the demo's anchors drawn several ways (views), once by
a fresh build and once by ``reanchor``, both in this process, both timed from the same state:

* *cold*: the new anchors were never encoded (an empty anchor cache for each), so both encode them;
* *warm*: the new anchors' encodings are in the cache (a shared anchor set, or a second try with
  other k or p), so a fresh build's only encoding is the corpus, and reanchoring encodes nothing.

The two results are compared item for item (the same relative vectors and search results are
tested in tests/test_reanchor.py; here: the same top 10 for a set of queries).

    python scripts/bench_reanchor.py --out results/bench/reanchor.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from retrieval.evaluation.benchlib import emoji_data_args, report

QUERIES = ["an emoji of a red apple", "an emoji of a dog face", "an emoji of a rocket", "an emoji of a smiling face",
           "an emoji of a flag", "an emoji of a train", "an emoji of a heart", "an emoji of a cat"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    emoji_data_args(ap)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    from retrieval import Collection, build_collection
    from retrieval.api import reanchor
    from retrieval.datasets import emoji

    paths = emoji.prepare(a.data, limit=a.limit, views=True, show_progress_bar=False)
    if "anchors_views" not in paths:
        print(f"the anchors drawn several ways need the npm emoji styles: {paths.get('views_skipped')}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-reanchor-"))
    corpus, old, new = paths["corpus"], paths["anchors"], paths["anchors_views"]
    base = build_collection(corpus, old, tmp / "base", cache_dir=str(tmp / "cache-base"), show_progress_bar=False)
    n_items = Collection.open(base).manifest["counts"]["items"]

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    rows, same = {}, {}
    for regime in ("cold", "warm"):
        fresh_cache, re_cache = str(tmp / f"cache-{regime}-fresh"), str(tmp / f"cache-{regime}-re")
        if regime == "warm":  # the new anchors encoded once beforehand, in both caches
            for c in (fresh_cache, re_cache):
                shutil.copytree(tmp / "cache-cold-fresh", c)
        fresh_s, fresh = timed(lambda: build_collection(corpus, new, tmp / f"fresh-{regime}", cache_dir=fresh_cache,
                                                        show_progress_bar=False))
        re_s, re = timed(lambda: reanchor(base, new, tmp / f"re-{regime}", cache_dir=re_cache, show_progress_bar=False))
        f, r = Collection.open(fresh), Collection.open(re)
        same[regime] = all([h.id for h in f.search(q, k=10)] == [h.id for h in r.search(q, k=10)] for q in QUERIES)
        rows[regime] = (fresh_s, re_s, Collection.open(fresh).manifest["timings"])
    n_old = Collection.open(base).manifest["anchors"]["count"]
    shutil.rmtree(tmp, ignore_errors=True)

    lines = [f"Reanchoring on the emoji demo data: {n_items} Twemoji items, built with {n_old} Noto anchors, then "
             f"given the demo's anchors drawn several ways ({Path(new).name}); default encoders; "
             f"{os.cpu_count()} CPU cores; one run each, in this process.", "",
             f"Command: `python scripts/bench_reanchor.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(), "",
             "| new anchors' encodings | fresh build s (of which encoding anchors / corpus) | reanchor s | "
             "fresh / reanchor | same top 10 for every query |", "|---|---|---|---|---|"]
    data = {"items": n_items, "rows": []}
    for regime, (fresh_s, re_s, tm) in rows.items():
        label = "not cached (both encode them)" if regime == "cold" else "cached (encoded once before)"
        lines.append(f"| {label} | {fresh_s:.1f} ({tm['encode_anchors']:.1f} / {tm['encode_corpus']:.1f}) | "
                     f"{re_s:.1f} | {fresh_s / re_s:.1f} | {same[regime]} |")
        data["rows"].append({"regime": regime, "fresh_s": fresh_s, "reanchor_s": re_s, "ratio": fresh_s / re_s,
                             "fresh_encode_anchors_s": tm["encode_anchors"], "fresh_encode_corpus_s": tm["encode_corpus"],
                             "same_top10": same[regime]})
    report(lines, a.out, data)
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
