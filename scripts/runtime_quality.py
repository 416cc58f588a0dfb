"""Does the encoder runtime change what a search returns? Text -> image on a built collection, its
items' own captions as queries, with the query text encoded on torch, ONNX Runtime and OpenVINO:
R@1, R@10 and the share of top-10 lists identical to torch's.

    python scripts/runtime_quality.py --index indexes/emoji-demo --out results/experiments/runtime.md
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from retrieval.evaluation.benchlib import report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", default="indexes/emoji-demo")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    from retrieval import Collection
    from retrieval.encoders import load_encoder

    base = Collection.open(a.index)
    spec = base.manifest["encoders"]["text"]["spec"]
    pairs = [(c, int(i)) for c, i in zip(base.items["caption"], base.item_ids) if c]
    queries, targets = [c for c, _ in pairs], [i for _, i in pairs]
    lists, rows, data = {}, [], {"index": a.index, "queries": len(queries), "rows": []}
    for runtime in ("torch", "onnx", "openvino"):
        col = Collection.open(a.index, text_encoder=load_encoder(spec, "text", runtime=runtime))
        hits = col.search_many(queries, k=10, target="image", show_progress_bar=False)
        lists[runtime] = [[h.id for h in hs] for hs in hits]
        r1 = float(np.mean([hs[0] == t for hs, t in zip(lists[runtime], targets)]))
        r10 = float(np.mean([t in hs for hs, t in zip(lists[runtime], targets)]))
        same = float(np.mean([x == y for x, y in zip(lists[runtime], lists["torch"])]))
        rows.append(f"| {runtime} | {r1:.4f} | {r10:.4f} | {same:.3f} |")
        data["rows"].append({"runtime": runtime, "R@1": r1, "R@10": r10, "same_top10_as_torch": same})
    cmd = f"python scripts/runtime_quality.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip()
    report([f"Text -> image on `{a.index}` ({len(queries)} queries: the items' own captions; text encoder "
            f"`{spec}`, the items' vectors as stored), query text encoded on each runtime.", "",
            f"Command: `{cmd}`", "", "| runtime | R@1 | R@10 | top-10 lists identical to torch's |",
            "|---|---|---|---|", *rows], a.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
