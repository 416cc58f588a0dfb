"""How captioned corpus items should join anchors of another domain: the ways tried before self-anchoring.

Each picture source is a corpus of which a random 5 / 10 / 30 % is captioned (3 draws, seeded as the
captions suite draws); the uncaptioned items' captions search the whole corpus (R@10, the build's
recipe for the anchors' size, plus the label bridge at its weight; no background bank: the emoji
anchors' would be themselves). The given anchors are the engine's 1,758 emoji pairs. Rows: the emoji
alone; the captioned items appended as they are; the same with each captioned item left out of its
own relative vector (is it items finding themselves?); the captioned items as a block of their own
beside the emoji, or the emoji as a bank beside them, at several weights; the given anchors translated
to the corpus's means, then the captioned items appended (what the build does); and each domain
centred on its own mean and normalised (items and queries centred on the corpus's).

    .venv/bin/python scripts/self_anchor_probe.py --out results/experiments/self_anchors.md
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from retrieval.build.background import TEMPLATE
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.self_anchors import merged
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.projector import blocks_spec, fit_projector
from retrieval.encoders import load_encoder
from retrieval.encoders.labels import DEFAULT_WEIGHT, class_vectors, imagenet_names
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_emoji, load_pictures
from retrieval.evaluation.suites.captions import DRAWS, FRACTIONS, draw
from retrieval.evaluation.suites.pictures import image_logits, label_bridge

SOURCES = ("tuxpaint", "scratch")
WEIGHTS = (0.1, 0.5, 1.0, 3.0)


def rec_for(n: int):
    return recipe(AnchorShape(n, "image"), None, BuildOptions())


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def left_out(main, g, rel, own):
    """``rel`` with each gallery row in ``own`` (row -> anchor column) relativised without that anchor."""
    rows = np.array(sorted(own))
    c = main.dense(g[rows]).astype(np.float64)
    c[np.arange(len(rows)), [own[r] for r in rows]] = -np.inf
    k, p = min(main.relativiser.k, c.shape[1] - 1), main.relativiser.p
    idx = np.argpartition(-c, k - 1, axis=1)[:, :k]
    val = np.maximum(np.take_along_axis(c, idx, 1), 0) ** p
    val /= np.maximum(np.linalg.norm(val, axis=1, keepdims=True), 1e-12)
    out = rel.tolil()
    out[rows] = sp.csr_matrix((val.ravel(), (np.repeat(np.arange(len(rows)), k), idx.ravel())), shape=c.shape)
    return out.tocsr()


def hits(spec, at, ai, q, g, targets, labels, bank=None, own=None):
    pt = fit_projector(spec, at, bank=None if bank is None else bank[0])
    pi = fit_projector(spec, ai, bank=None if bank is None else bank[1])
    rel = pi.transform(g)
    if own is not None:
        rel = left_out(pi, g, rel, own)
    s = lexicographic((pt.transform(q) @ rel.T).toarray() + DEFAULT_WEIGHT * labels, pt.dense(q) @ pi.dense(g).T)
    return query_recall(s, targets, 10)


def rows_of(G, d, captioned, labels) -> dict:
    """Every way's per-query R@10 for one draw."""
    S = captioned
    U = np.setdiff1d(np.arange(len(d.images)), S)
    q, g, lab = d.texts[U], d.images, labels[U]
    rG, rM, rS = rec_for(len(G[0])), rec_for(len(G[0]) + len(S)), rec_for(len(S))
    At, Ai = np.vstack([G[0], d.texts[S]]), np.vstack([G[1], d.images[S]])
    out = {"emoji alone": hits(rG.chain(style=False), *G, q, g, U, lab),
           "appended as they are": hits(rM.chain(style=False), At, Ai, q, g, U, lab),
           "appended, each left out of its own vector": hits(rM.chain(style=False), At, Ai, q, g, U, lab,
                                                             own={int(r): len(G[0]) + i for i, r in enumerate(S)})}
    for w in WEIGHTS:
        own_block = blocks_spec(rG.chain(style=False), rG.chain(style=False, k=min(256, len(S))), w)
        out[f"emoji + captioned block x{w:g}"] = hits(own_block, *G, q, g, U, lab, bank=(d.texts[S], d.images[S]))
        bank = blocks_spec(rS.chain(style=False), rS.chain(style=False, k=min(256, len(G[0]))), w)
        out[f"captioned + emoji bank x{w:g}"] = hits(bank, d.texts[S], d.images[S], q, g, U, lab, bank=G)
    med, txt = merged(G[1], G[0], d.images[S], d.texts[S], d.images.mean(0, dtype=np.float64))
    out["**given moved to the corpus's means, then appended** (the build)"] = hits(rM.chain(style=False), txt, med, q, g,
                                                                                  U, lab)
    mi, mt = d.images.mean(0), d.texts[S].mean(0)
    out["each domain centred on its own mean"] = hits(
        rM.chain(style=False), np.vstack([unit(G[0] - G[0].mean(0)), unit(d.texts[S] - mt)]),
        np.vstack([unit(G[1] - G[1].mean(0)), unit(d.images[S] - mi)]), unit(q - mt), unit(g - mi), U, lab)
    return out


def main() -> None:
    args, start = out_args(__doc__)
    img, txt = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("minilm", "text")
    classes = class_vectors(txt, imagenet_names())
    em = load_emoji(img, txt, [TEMPLATE], False)
    G = (em.texts[TEMPLATE], em.images["noto"])
    table, data = {}, {}
    for name in SOURCES:
        d = load_pictures(name, img, txt, False)
        labels = label_bridge(image_logits(d.paths, name), classes, d.texts)
        for f in FRACTIONS:
            draws = [rows_of(G, d, draw(len(d.images), f, seed), labels) for seed in range(DRAWS)]
            data[f"{name} {f:.0%}"] = {k: float(np.mean([x[k].mean() for x in draws])) for k in draws[0]}
            table[f"{name} {f:.0%}"] = data[f"{name} {f:.0%}"]
    ways = list(next(iter(table.values())))
    lines = ["# Captioned corpus items beside anchors of another domain: the ways tried", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             "| way | " + " | ".join(table) + " |", "|---|" + "---:|" * len(table)]
    lines += [f"| {w} | " + " | ".join(f"{table[c][w]:.3f}" for c in table) + " |" for w in ways]
    lines += ["", f"Test R@10 of the uncaptioned items' captions, mean of {DRAWS} draws. "
              f"`.venv/bin/python scripts/self_anchor_probe.py --out results/experiments/self_anchors.md` "
              f"({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, data)


if __name__ == "__main__":
    main()
