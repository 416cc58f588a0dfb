"""Further ideas on top of the whitened default, each a measured row (none adopted).

On the picture suites' splits, folds and label bridge (``retrieval eval --suite pictures``), every
row is scored on the 4 validation folds (mean over sources of each source's fold mean) and on the
test split: one side whitened only, a lambda or k / p per side, the dense secondary score blended
in, the label bridge compared in the whitened text space or through the anchor captions, prompt
templates for the class names, whitening fitted on anchors and corpus together, anchors weighted by
how their two sides agree, and a contrastive (InfoNCE) linear map fitted on the anchors.
``--image-encoder`` reruns the reference rows with another image network; ``--views`` measures
whitening beside the emoji views default (five drawing styles, WCCN) on the emoji-xstyle folds.

    .venv/bin/python scripts/whitening_ideas.py --out results/experiments/whitening/ideas.md
    .venv/bin/python scripts/whitening_ideas.py --image-encoder efficientnet-lite2 --out results/experiments/whitening/lite2.md
    .venv/bin/python scripts/whitening_ideas.py --views --out results/experiments/whitening/views.md
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp

from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import RelativeProjector
from retrieval.core.whiten import whitening_matrix
from retrieval.encoders import load_encoder
from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT, label_vectors
from retrieval.evaluation.benchlib import report
from retrieval.evaluation.suites.pictures import PLAIN, SOURCES, engine_default, source_tasks

_DEFAULT = engine_default()  # the single-view default, from the build's recipe
LAM, K, P, W = _DEFAULT["asif"]["whiten"], _DEFAULT["asif"]["k"], _DEFAULT["asif"]["p"], _DEFAULT["w"]


def unit(x):
    return l2_normalise(np.asarray(x), dtype=np.float64)


def projectors(t, lam_t=LAM, lam_i=LAM, k_t=K, k_i=K, p_t=P, p_i=P, center=True):
    return (RelativeProjector(k=min(k_t, len(t.at)), p=p_t, center=center, whiten=lam_t).fit(t.at),
            RelativeProjector(k=min(k_i, len(t.ai)), p=p_i, center=center, whiten=lam_i).fit(t.ai))


def asif(t, pt, pi, q=None, g=None):
    q, g = t.q if q is None else q, t.g if g is None else g
    return (pt.transform(q) @ pi.transform(g).T).toarray(), pt.dense(q) @ pi.dense(g).T


def default_with(**kw):
    w = kw.pop("w", W)

    def score(t):
        prim, sec = asif(t, *projectors(t, **kw))
        return lexicographic(prim + w * t.labels() if w else prim, sec)
    return score


def whitened_labels(w):
    """The label bridge's cosine taken after the text projector's own centring and whitening."""
    def score(t):
        pt, pi = projectors(t)
        prim, sec = asif(t, pt, pi)
        lv = label_vectors(t.g_logits, t.classes)
        return lexicographic(prim + w * (pt._prepare(t.q) @ pt._prepare(lv).T), sec)
    return score


def labels_through_captions(w1, w2):
    """Plus the query's and each image's label point compared through the anchor captions (ASIF)."""
    def score(t):
        pt, pi = projectors(t)
        prim, sec = asif(t, pt, pi)
        lv = label_vectors(t.g_logits, t.classes)
        rel = (pt.transform(t.q) @ pt.transform(lv).T).toarray()
        return lexicographic(prim + w1 * t.labels() + w2 * rel, sec)
    return score


def secondary_blend(beta):
    def score(t):
        prim, sec = asif(t, *projectors(t))
        return lexicographic(prim + beta * sec + W * t.labels(), sec)
    return score


def templated_labels(classes):
    def score(t):
        prim, sec = asif(t, *projectors(t))
        lab = unit(t.q) @ label_vectors(t.g_logits, classes).T
        return lexicographic(prim + W * lab, sec)
    return score


def transductive(with_mean):
    """Image whitening fitted on anchors and gallery together (and centred on both, or on the anchors)."""
    def score(t):
        pt, _ = projectors(t)
        ai, both = unit(t.ai), unit(np.vstack([t.ai, t.g]))
        mu = (both if with_mean else ai).mean(0)
        wm = whitening_matrix(both - both.mean(0), LAM).astype(np.float64)

        def prep(x):
            return unit((unit(x) - mu) @ wm).astype(np.float32)
        pi = RelativeProjector(k=min(K, len(t.ai)), p=P).fit(prep(t.ai))
        prim, sec = asif(t, pt, pi, g=prep(t.g))
        return lexicographic(prim + W * t.labels(), sec)
    return score


def agreement_weights(gamma):
    """Each anchor's column scaled by how its caption's and its picture's similarities to the other
    anchors correlate (raised to gamma); the query rows renormalised."""
    def score(t):
        pt, pi = projectors(t)
        st, si = (np.asarray(p.anchors_, np.float64) for p in (pt, pi))
        st, si = st @ st.T, si @ si.T
        np.fill_diagonal(st, 0)
        np.fill_diagonal(si, 0)
        st -= st.mean(1, keepdims=True)
        si -= si.mean(1, keepdims=True)
        corr = (st * si).sum(1) / np.sqrt((st ** 2).sum(1) * (si ** 2).sum(1))
        qr = pt.transform(t.q) @ sp.diags(np.maximum(corr, 0) ** gamma)
        norm = np.sqrt(np.asarray(qr.multiply(qr).sum(1))).ravel() + 1e-12
        prim = (qr @ pi.transform(t.g).T).toarray() / norm[:, None]
        return lexicographic(prim + W * t.labels(), pt.dense(t.q) @ pi.dense(t.g).T)
    return score


def contrastive(beta, rank, steps=200, seed=0):
    """Plus the cosine of a linear map of each side into a shared rank-``rank`` space, fitted on the
    anchor pairs with a symmetric InfoNCE loss (full batch, AdamW, weight decay 0.01, learned temperature)."""
    import torch

    def fit(at, ai):
        g = torch.Generator().manual_seed(seed)
        mt, mi = unit(at).mean(0), unit(ai).mean(0)
        xt = torch.tensor(unit(at) - mt, dtype=torch.float32)
        xi = torch.tensor(unit(ai) - mi, dtype=torch.float32)
        wt = (torch.randn(xt.shape[1], rank, generator=g) / xt.shape[1] ** 0.5).requires_grad_()
        wi = (torch.randn(xi.shape[1], rank, generator=g) / xi.shape[1] ** 0.5).requires_grad_()
        scale = torch.tensor(np.log(10.0), requires_grad=True)
        opt = torch.optim.AdamW([wt, wi, scale], lr=1e-2, weight_decay=1e-2)
        y = torch.arange(len(xt))
        for _ in range(steps):
            zt = torch.nn.functional.normalize(xt @ wt, dim=1)
            zi = torch.nn.functional.normalize(xi @ wi, dim=1)
            s = scale.exp().clamp(max=100) * zt @ zi.T
            loss = (torch.nn.functional.cross_entropy(s, y) + torch.nn.functional.cross_entropy(s.T, y)) / 2
            opt.zero_grad()
            loss.backward()
            opt.step()
        wt, wi = wt.detach().numpy(), wi.detach().numpy()
        return lambda q: unit((unit(q) - mt) @ wt), lambda x: unit((unit(x) - mi) @ wi)

    def score(t):
        prim, sec = asif(t, *projectors(t))
        ft, fi = fit(t.at, t.ai)
        return lexicographic(prim + W * t.labels() + beta * (ft(t.q) @ fi(t.g).T), sec)
    return score


def measure(tasks, score):
    """(mean val R@10 over sources, {source: test R@10})."""
    val, test = [], {}
    for s, (te, va) in tasks.items():
        val.append(np.mean([retrieval_metrics(score(t), np.arange(len(t.q)))["R@10"] for t in va]))
        test[s] = retrieval_metrics(score(te), np.arange(len(te.q)))["R@10"]
    return float(np.mean(val)), test


def picture_rows(image_name, reference_only):
    image, text = load_encoder(image_name, "image"), load_encoder("minilm", "text")
    tasks = {s: source_tasks(s, image, text, False)[:2] for s in SOURCES}
    rows = [("plain ASIF k=64 p=8, no centring", default_with(lam_t=0, lam_i=0, center=False, w=0,
                                                                k_t=PLAIN["k"], k_i=PLAIN["k"], p_t=PLAIN["p"],
                                                                p_i=PLAIN["p"])),
            ("no whitening (the default before)", default_with(lam_t=0, lam_i=0)),
            ("**the default**: lambda 9 both sides, k=256 p=2, label weight 0.6", default_with())]
    if not reference_only:
        from retrieval.encoders.labels import class_vectors, imagenet_names

        names = imagenet_names()
        templates = ("{}", "a picture of a {}", "a drawing of a {}", "a photo of a {}")
        ensemble = l2_normalise(sum(class_vectors(text, [tp.format(n) for n in names]) for tp in templates))
        rows += [("image side whitened only", default_with(lam_t=0)), ("text side whitened only", default_with(lam_i=0))]
        rows += [(f"lambda text {a:g}, image {b:g}", default_with(lam_t=a, lam_i=b))
                 for a in (3.0, 9.0, 30.0) for b in (3.0, 9.0, 30.0) if (a, b) != (9.0, 9.0)]
        rows += [(f"text k={kt} p={pt:g}, image k={ki} p={pi:g}", default_with(k_t=kt, k_i=ki, p_t=pt, p_i=pi))
                 for kt, ki, pt, pi in ((64, 256, 2, 2), (256, 64, 2, 2), (128, 256, 2, 2), (256, 256, 1, 2),
                                        (256, 256, 2, 1), (256, 256, 3, 2), (256, 256, 2, 3))]
        rows += [(f"dense secondary blended in, beta {b:g}", secondary_blend(b)) for b in (0.1, 0.3, 1.0)]
        rows += [(f"label bridge in the whitened text space, weight {w:g}", whitened_labels(w)) for w in (0.4, 0.6, 0.8)]
        rows += [(f"label bridge {a:g} + through the anchor captions {b:g}", labels_through_captions(a, b))
                 for a, b in ((0.6, 0.3), (0.3, 0.3), (0.6, 0.6), (0.0, 0.6))]
        rows += [("label names: mean of 4 prompt templates", templated_labels(ensemble))]
        rows += [("image whitening fitted on anchors + corpus", transductive(False)),
                 ("image whitening and centring on anchors + corpus", transductive(True))]
        rows += [(f"anchors weighted by agreement, gamma {g:g}", agreement_weights(g)) for g in (0.5, 1.0, 2.0)]
        rows += [(f"contrastive linear map rank {r}, weight {b:g}", contrastive(b, r)) for r in (64, 128)
                 for b in (0.3, 1.0)]
    out = []
    for name, fn in rows:
        v, test = measure(tasks, fn)
        out.append((name, v, test))
        print(f"{name}: val {v:.3f}, test " + ", ".join(f"{s} {x:.3f}" for s, x in test.items()), flush=True)
    return out


def views_rows():
    """Whitening beside the emoji views default (five styles merged, WCCN on the image side)."""
    import pyarrow.parquet as pq

    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P
    from retrieval.encoders.labels import class_vectors, imagenet_names
    from retrieval.evaluation.data import data_dir, load_emoji
    from retrieval.evaluation.harness import CAPTION, EmojiTask, anchor_views, emoji_splits
    from retrieval.evaluation.suites.pictures import image_logits

    text = load_encoder("minilm", "text")
    data = load_emoji(load_encoder("efficientnet-lite0-multi", "image"), text, [CAPTION], show_progress_bar=False,
                      svg_styles=True)
    views, s = anchor_views(data, "twemoji"), emoji_splits(data.names)
    logits = image_logits([r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()],
                          "emoji-twemoji")
    classes = class_vectors(text, imagenet_names())
    val = ([EmojiTask(data, a, q, views=views) for a, q in s["folds"]]
           + [EmojiTask(data, s["anchor"], q, views=views) for _, q in s["folds"]])
    tests = {"unseen": EmojiTask(data, s["anchor"], s["query"], views=views),
             "seen": EmojiTask(data, s["all"], s["query"], views=views)}

    def score(t, lam_t, lam_i):
        pt = RelativeProjector(k=DEFAULT_VIEWS_K, p=DEFAULT_VIEWS_P, center=True, whiten=lam_t).fit(t.aq)
        pi = RelativeProjector(k=DEFAULT_VIEWS_K, p=DEFAULT_VIEWS_P, center=True, whiten=lam_i).fit(t.ag)
        prim = (pt.transform(t.q) @ pi.transform(t.g).T).toarray()
        lab = unit(t.q) @ label_vectors(logits[t.queries], classes).T
        return lexicographic(prim + DEFAULT_VIEWS_WEIGHT * lab, pt.dense(t.q) @ pi.dense(t.g).T)

    out = []
    for lam_t, lam_i in ((0, 0), (3, 3), (9, 9), (30, 30), (100, 100), (9, 0), (30, 0), (100, 0)):
        v = np.mean([retrieval_metrics(score(t, lam_t, lam_i), np.arange(len(t.q)))["R@10"] for t in val])
        test = {r: retrieval_metrics(score(t, lam_t, lam_i), np.arange(len(t.q))) for r, t in tests.items()}
        name = f"lambda text {lam_t:g}, image {lam_i:g}" + (" (the views default)" if lam_t == lam_i == 0 else "")
        out.append((name, float(v), {f"{r} R@10 / R@1": f"{m['R@10']:.3f} / {m['R@1']:.3f}" for r, m in test.items()}))
        print(out[-1], flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-encoder", default="efficientnet-lite0-multi")
    ap.add_argument("--views", action="store_true", help="whitening beside the emoji views default instead")
    ap.add_argument("--out", default="results/experiments/whitening/ideas.md")
    a = ap.parse_args()
    t0 = time.time()
    command = "`.venv/bin/python scripts/whitening_ideas.py " + " ".join(sys.argv[1:]) + "`"
    if a.views:
        rows = views_rows()
        lines = ["# Whitening beside the emoji views default", "",
                 f"Produced by {command} in {time.time() - t0:.0f} s: anchors drawn in five styles (prototypes + "
                 "WCCN on the image side), k=32 p=2, label weight 0.2, Twemoji gallery; validation = the "
                 "emoji-xstyle folds, seen and unseen.", "",
                 "| whitening | mean val R@10 | unseen R@10 / R@1 | seen R@10 / R@1 |", "|---|---|---|---|"]
        lines += [f"| {n} | {v:.3f} | {t['unseen R@10 / R@1']} | {t['seen R@10 / R@1']} |" for n, v, t in rows]
        data = {"rows": [{"name": n, "val": v, "test": t} for n, v, t in rows]}
    else:
        rows = picture_rows(a.image_encoder, a.image_encoder != "efficientnet-lite0-multi")
        lines = ["# Ideas on top of the whitened default, one picture per caption", "",
                 f"Produced by {command} in {time.time() - t0:.0f} s. Image encoder `{a.image_encoder}`, text "
                 "`minilm`; the splits, folds and label bridge of `retrieval eval --suite pictures`. Every row "
                 "but the first two is the default (lambda 9, k=256, p=2, label weight 0.6) with one thing changed.",
                 "", "| row | mean val R@10 | " + " | ".join(f"{s} test R@10" for s in SOURCES) + " | mean test R@10 |",
                 "|---|---|" + "---|" * len(SOURCES) + "---|"]
        lines += [f"| {n} | {v:.3f} | " + " | ".join(f"{t[s]:.3f}" for s in SOURCES) +
                  f" | {np.mean(list(t.values())):.3f} |" for n, v, t in rows]
        data = {"rows": [{"name": n, "val": v, "test": t} for n, v, t in rows]}
    report(lines, a.out, data)


if __name__ == "__main__":
    main()
