"""The background bank through the product: ``retrieval build`` with its defaults on a picture suite's
split, then every test caption searched as a user would (``Collection.search``), against the
suite's figure for the same split.

Anchors: the anchor half of a source of ``retrieval eval --suite pictures`` (one picture and its
caption per concept); corpus: the other half's pictures; queries: their captions. Builds with the
defaults (the emoji background bank) and with ``background="none"``; prints R@1 and R@10 (the
target's rank among the search's answers; search breaks ties by the secondary score).

    .venv/bin/python scripts/background_end_to_end.py --source tuxpaint --out results/experiments/background/end_to_end.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from retrieval.evaluation.benchlib import report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", default="tuxpaint")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    os.environ.pop("RETRIEVAL_BACKGROUND", None)  # the product's default, whatever the shell says
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import load_pictures
    from retrieval.evaluation.suites.pictures import split

    t0 = time.time()
    d = load_pictures(a.source, load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text"), False)
    anchor, query, _ = split(d.names, a.source + ":")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pq.write_table(pa.table({"image": [d.paths[i] for i in anchor], "caption": [d.captions[i] for i in anchor]}),
                       tmp / "anchors.parquet")
        pq.write_table(pa.table({"image": [d.paths[i] for i in query]}), tmp / "corpus.parquet")
        for name, kw in (("default (emoji background bank)", {}), ("background none", {"background": "none"})):
            t1 = time.time()
            out = build_collection(str(tmp / "corpus.parquet"), str(tmp / "anchors.parquet"), tmp / "col", overwrite=True,
                                   show_progress_bar=False, **kw)
            built = time.time() - t1
            col = Collection.open(out)
            bank = col.manifest["anchors"].get("background")
            hits = {1: 0, 10: 0}
            for i in query:
                paths = [h.path for h in col.search(d.captions[i], k=10)]
                rank = paths.index(d.paths[i]) + 1 if d.paths[i] in paths else None
                for k in hits:
                    hits[k] += rank is not None and rank <= k
            rows.append((name, f"{bank['count']} from {bank['source']}, weight {bank['weight']:g}" if bank else "none",
                         hits[1] / len(query), hits[10] / len(query), built))
            print(rows[-1], flush=True)
    lines = [f"# The background bank through `retrieval build`: {a.source}", "",
             f"Produced by `.venv/bin/python scripts/background_end_to_end.py --source {a.source}"
             + (f" --out {a.out}" if a.out else "") + f"` in {time.time() - t0:.0f} s: {len(anchor)} anchor pairs, "
             f"{len(query)} corpus pictures, each of their captions searched with `Collection.search(caption, k=10)` "
             "(the planner's default route). The pictures suite's split, so the suite's test figures for the same "
             "split are the comparison (`retrieval eval --suite pictures`).", "",
             "| build | background bank | R@1 | R@10 | build seconds (encodings cached or not) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {b} | {r1:.3f} | {r10:.3f} | {s:.0f} |" for n, b, r1, r10, s in rows]
    report(lines, a.out, {"rows": [dict(zip(("build", "bank", "R@1", "R@10", "seconds"), r)) for r in rows]})


if __name__ == "__main__":
    main()
