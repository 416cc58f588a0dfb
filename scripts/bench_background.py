"""What the background bank costs a query: search with and without it, on the same collection split,
in one process (paired ratios: the host's load drifts).

The Tux Paint split of ``retrieval eval --suite pictures`` (302 anchor pairs, 275 corpus pictures)
built twice with ``retrieval build`` defaults (the emoji bank, 1,758 pairs) and ``--background none``;
then, for its 275 test captions, (1) the query side's relativisation alone (text vectors already
encoded: what the bank adds), (2) ``Collection.search(caption, k=10)`` whole (encoding, planning,
relativising, the sparse product, the label bridge, ties), and the stored relative vectors' non-zeros.

    .venv/bin/python scripts/bench_background.py --out results/bench/background.md
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import paired, report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args()
    os.environ.pop("RETRIEVAL_BACKGROUND", None)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import load_pictures
    from retrieval.evaluation.suites.pictures import split

    t0 = time.time()
    d = load_pictures("tuxpaint", load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text"),
                      False)
    anchor, query, _ = split(d.names, "tuxpaint:")
    captions = [d.captions[i] for i in query]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pq.write_table(pa.table({"image": [d.paths[i] for i in anchor], "caption": [d.captions[i] for i in anchor]}),
                       tmp / "anchors.parquet")
        pq.write_table(pa.table({"image": [d.paths[i] for i in query]}), tmp / "corpus.parquet")
        cols = {name: Collection.open(build_collection(str(tmp / "corpus.parquet"), str(tmp / "anchors.parquet"),
                                                       tmp / name, background=spec, show_progress_bar=False))
                for name, spec in (("bank", None), ("none", "none"))}
        q = cols["none"].encoder("text").encode(captions, show_progress_bar=False)
        for c in cols.values():  # warm: models loaded, caches filled
            c.search(captions[0], k=10)
        relativise = paired(lambda: cols["none"].projectors["text"].transform_rows(q),
                            lambda: cols["bank"].projectors["text"].transform_rows(q), a.repeat)
        search = paired(lambda: [cols["none"].search(c, k=10) for c in captions],
                        lambda: [cols["bank"].search(c, k=10) for c in captions], a.repeat)
        nnz = {n: cols[n].projectors["image"].transform(np.asarray(cols[n].sides["image"].abs)).nnz for n in cols}
    lines = ["# What the background bank costs a query", "",
             "Produced by `.venv/bin/python scripts/bench_background.py" + (f" --out {a.out}" if a.out else "")
             + f"` in {time.time() - t0:.0f} s on {os.cpu_count()} cores: the Tux Paint split (302 anchors, "
             f"{len(captions)} pictures and test captions), built with the default emoji bank (1,758 pairs) and with "
             f"`--background none`. Ratios are time without the bank / time with it (below 1: the bank is slower), "
             f"the median of {a.repeat} back-to-back pairs (lowest, highest).", "",
             "| step | ratio without / with the bank |", "|---|---|",
             f"| relativising {len(captions)} encoded text queries, one at a time (`transform_rows`) | "
             f"{relativise[0]:.2f} ({relativise[1]:.2f}-{relativise[2]:.2f}) |",
             f"| `Collection.search(caption, k=10)` for each caption (encoding included) | "
             f"{search[0]:.2f} ({search[1]:.2f}-{search[2]:.2f}) |", "",
             f"Stored relative vectors' non-zeros over the {len(captions)} pictures: {nnz['none']} without the bank, "
             f"{nnz['bank']} with it ({nnz['bank'] / nnz['none']:.2f} x)."]
    report(lines, a.out, {"relativise": relativise, "search": search, "nnz": nnz})


if __name__ == "__main__":
    main()
