"""What ``--anchor-rarity`` costs: the build's relativisation and a query, with and without it, in one process.

Real vectors: the emoji pack's 1,758 pairs as anchors (with no bank, as a build on them has none),
the Open Clip Art pictures (EfficientNet-Lite0, 1,280-d) tiled with small Gaussian noise up to
``--items`` as the corpus. Relativisation is what retrieval/build/writer.py's ``relativise`` does to
the items: fit the recipe's projector on the anchors and transform every item; with rarity, also
relativise a sample (at most 20,000 items), learn the weights, refit and transform. A query is one
text query (its chain has no rarity step: the weights are on the items' side) and one image query
(through the items' chain, rarity included), a row at a time as the server does. Ratios are paired
(retrieval/evaluation/benchlib.py: ``paired``), median (lowest-highest) of --repeat runs.

    .venv/bin/python scripts/bench_rarity.py --out results/bench/rarity.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.build import rarity
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.core.projector import fit_projector
from retrieval.encoders import load_encoder
from retrieval.evaluation.benchlib import out_args, paired, report
from retrieval.evaluation.data import load_emoji, load_pictures
from retrieval.evaluation.suites import captions as C


def configure(ap) -> None:
    ap.add_argument("--items", type=int, default=100000, help="corpus size (default 100,000)")
    ap.add_argument("--repeat", type=int, default=5)


def relativised(specs, anchors, items, power):
    """The items' relative vectors and projector, as retrieval/build/writer.py's ``relativise`` makes them."""
    _, med, rel, _ = rarity.relativised_items(specs, "image", lambda spec: fit_projector(spec, anchors), items, power)
    return rel, med


def main() -> None:
    args, start = out_args(__doc__, configure)
    img, txt = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    em = load_emoji(img, txt, [C.TEMPLATE], False)
    a_txt, a_med = em.texts[C.TEMPLATE], em.images["noto"]
    pics = load_pictures("openclipart", img, txt, False)
    rng = np.random.default_rng(0)
    reps = -(-args.items // len(pics.images))
    items = (np.tile(pics.images, (reps, 1))[:args.items] + 0.01 * rng.normal(size=(args.items, a_med.shape[1]))
             ).astype(np.float32)
    specs = recipe(AnchorShape(len(a_med), "image"), None, BuildOptions()).specs("image")
    t = time.perf_counter()
    _, plain = relativised(specs, a_med, items, 0.0)
    t_plain = time.perf_counter() - t
    t = time.perf_counter()
    _, weighted = relativised(specs, a_med, items, 1.0)
    t_rare = time.perf_counter() - t
    build = paired(lambda: relativised(specs, a_med, items, 0.0), lambda: relativised(specs, a_med, items, 1.0),
                   args.repeat)
    queries = items[:64]
    image_query = paired(lambda: plain.transform_rows(queries), lambda: weighted.transform_rows(queries), args.repeat)
    text = fit_projector(specs["text"], a_txt)
    lines = [f"# What --anchor-rarity costs ({args.items:,} items, {len(a_med):,} emoji anchors)", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| what | without | with --anchor-rarity 1 | time without / time with (paired median, range) |",
             "|---|---:|---:|---:|",
             f"| relativise the corpus (fit + transform) | {t_plain:.2f} s | {t_rare:.2f} s | "
             f"{build[0]:.2f} ({build[1]:.2f}-{build[2]:.2f}) |",
             f"| 64 image queries, a row at a time | | | {image_query[0]:.2f} ({image_query[1]:.2f}-{image_query[2]:.2f}) |",
             f"| text queries | | | 1 (the same chain: {[s['step'] for s in text.to_spec()][-1]} last) |",
             "", f"`.venv/bin/python scripts/bench_rarity.py --out results/bench/rarity.md` ({time.time() - start:.0f} s, "
                 f"{time.strftime('%Y-%m-%d')}); encoding excluded."]
    report(lines, args.out, {"items": args.items, "anchors": len(a_med), "relativise_s": [t_plain, t_rare],
                             "build_ratio": build, "image_query_ratio": image_query})


if __name__ == "__main__":
    main()
