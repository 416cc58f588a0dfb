"""Experiment: which further emoji art styles, as views of the anchor concepts, help.

Every row uses the emoji-xstyle suite's splits and its views setting (prototypes + WCCN style
normaliser, image encoder efficientnet-lite0-multi): anchors = the anchor-half concepts drawn by the
listed styles, gallery = Twemoji drawings of the query-half concepts, queries "an emoji of NAME".
The candidates: emoji styles on the npm registry under a licence that allows this use, matched to
concepts by code point (folders of SVGs) or by CLDR name (Iconify icon sets). Not tried: Mozilla's
FxEmoji (its icon names do not follow CLDR: 230 matches), Fluent's monochrome high-contrast set, and
Twemoji-derived sets (Twemoji is the gallery). "val" is the mean over the suite's 8 validation tasks (4 unseen + 4 seen folds
of the anchor concepts); the suite's rule chooses k and p for each set (best val R@10, then R@1),
and the set of styles with the best chosen val R@10 is the one the engine uses. "test" is the
suite's test split (882 unseen queries), at the chosen k and p, reported whatever validation says
and never used to choose. Every set tried is a row.

    .venv/bin/python scripts/styles_experiment.py        # a few minutes once the suite's embeddings are cached

The candidate styles that the engine does not use are fetched here with `npm pack` (the npm
registry) into the evaluation cache. Output: results/experiments/styles/README.md.
"""
from __future__ import annotations

import argparse

import numpy as np

from retrieval.build.anchors import AnchorSet, encode_anchors
from retrieval.datasets import emoji as E
from retrieval.encoders import load_encoder
from retrieval.errors import InputError
from retrieval.evaluation import methods as M
from retrieval.evaluation.data import data_dir, load_emoji
from retrieval.evaluation.harness import CAPTION, MULTI, EmojiTask, choose, emoji_splits
from retrieval.evaluation.report import Report

# tried beside the engine's SVG_STYLES and not kept (see the table)
CANDIDATES = (
    E.SvgStyle("fluent-color", "Fluent Emoji (Color)", "@iconify-json/fluent-emoji@1.2.7",
               "iconify-json-fluent-emoji-1.2.7.tgz", "package/icons.json", "MIT (Microsoft)"),
    E.SvgStyle("streamline", "Streamline Emojis", "@iconify-json/streamline-emojis@1.2.4",
               "iconify-json-streamline-emojis-1.2.4.tgz", "package/icons.json", "CC BY 4.0 (Streamline)"),
    E.SvgStyle("noto-v1", "Noto Emoji v1 (blobs)", "@iconify-json/noto-v1@1.2.5", "iconify-json-noto-v1-1.2.5.tgz",
               "package/icons.json", "Apache 2.0 (Google)"),
)
BASE = ("noto", "openmoji", "fluent")
SETS = [BASE] + [BASE + (st,) for st in ("emojione", "emojione-v1", "fluent-color", "streamline", "noto-v1")] + [
    BASE + ("emojione", "emojione-v1"),
    BASE + ("emojione", "emojione-v1", "noto-v1"),
    BASE + ("emojione", "emojione-v1", "fluent-color", "streamline"),
    BASE + ("emojione", "emojione-v1", "fluent-color", "streamline", "noto-v1"),
]
COLS = ["views", "k", "p", "val R@1", "val R@10", "val MRR", "test R@1", "test R@10", "test MRR"]


def add_style(data, st: E.SvgStyle, image) -> None:
    """Render and encode one candidate style's drawings of the suite's concepts into ``data``."""
    wanted = set(data.names)
    concepts = {c.name: c for c in E.emoji_concepts() if c.name in wanted}
    keys = [concepts[n].key for n in data.names]
    rendered = E.render_style(st, list(concepts.values()), data_dir("emoji") / st.name, data_dir("npm"))
    has = np.array([k in rendered for k in keys])
    vecs = encode_anchors(AnchorSet([rendered[k] for k in keys if k in rendered], list(data.names[has]), source=st.name),
                          image, "image", batch_size=64)
    full = np.zeros((len(keys), vecs.shape[1]), np.float32)
    full[has] = vecs
    data.images[st.name], data.has[st.name] = full, has


def mean(ms, key):
    return float(np.mean([m[key] for m in ms]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/experiments")
    args = ap.parse_args(argv)
    image = load_encoder(MULTI, "image")
    data = load_emoji(image, load_encoder("minilm", "text"), [CAPTION], svg_styles=True)
    missing = [st for st in E.SVG_STYLES if st not in data.images]
    if missing:
        raise SystemExit(f"expected the engine's styles {list(E.SVG_STYLES)}; missing {missing} (bash scripts/setup.sh)")
    try:
        for st in CANDIDATES:
            add_style(data, st, image)
    except InputError as exc:  # no npm, or the registry unreachable: say which package
        raise SystemExit(f"styles_experiment: {exc}") from exc
    titles = {**{k: v.title for k, v in E.SVG_STYLES.items()}, **{c.name: c.title for c in CANDIDATES}, "noto": "Noto"}
    s = emoji_splits(data.names)
    rows = []
    for views in SETS:
        val = [EmojiTask(data, a, q, views=views) for a, q in s["folds"]]
        val += [EmojiTask(data, s["anchor"], q, views=views) for _, q in s["folds"]]
        c, _ = choose(val, center=True)
        vm = [t.evaluate(M.asif, **c) for t in val]
        tm = EmojiTask(data, s["anchor"], s["query"], views=views).evaluate(M.asif, **c)
        rows.append([" + ".join(titles[v] for v in views), c["k"], c["p"], mean(vm, "R@1"), mean(vm, "R@10"),
                     mean(vm, "MRR"), tm["R@1"], tm["R@10"], tm["MRR"]])
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: (r[4], r[3]))
    drawn = ", ".join(f"{titles[st]} {int(data.has[st].sum())}" for st in list(E.SVG_STYLES) + [c.name for c in CANDIDATES])
    rep = Report("styles", "Experiment: further emoji styles as views of the anchors",
                 ".venv/bin/python scripts/styles_experiment.py", {"image": MULTI, "text": "minilm"})
    rep.text(__doc__.split("    .venv/bin")[0].split("\n", 2)[2])
    rep.text(f"Of the {len(data.names)} concepts, each style draws: {drawn}. Packages and licences: "
             + "; ".join(f"{st.title}: npm `{st.package}`, {st.licence}" for st in list(E.SVG_STYLES.values()) + list(CANDIDATES))
             + ".")
    rep.table("Views of the anchor concepts: validation (chooses) and test (unseen text -> image, Twemoji gallery)",
              COLS, rows, note="Standard error of a test R@1 near 0.1 is about 0.010 (882 queries); of a validation R@10 "
                               "near 0.78 (8 tasks over the same 876 concepts), about 0.014.")
    rep.text(f"Best set by validation (R@10, then R@1): **{best[0]}** (k={best[1]} p={best[2]:g}).")
    print(rep.write(args.out))


if __name__ == "__main__":
    main()
