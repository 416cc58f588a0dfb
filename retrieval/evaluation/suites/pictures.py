"""The single-view suites: one picture per caption, in domains other than emoji.

``retrieval eval --suite pictures``. Each source (Debian's Tux Paint stamps, Open Clip Art and
Scratch costumes, :mod:`retrieval.datasets.pictures`; and emoji with Noto anchors only) is split
by concept in halves by a stable hash: anchors (one picture per caption) and test queries, so no
query concept is an anchor. Every row is text -> image over the test half's pictures; choices
(CSA's regulariser, the hubness correction's strength) are made on 4 validation folds of the anchor
concepts. The engine default is what ``retrieval build`` does with a single-view anchor table.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, Recipe, recipe
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall, retrieval_metrics
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import fit_projector
from retrieval.evaluation import methods as M
from retrieval.evaluation.harness import CAPTION, Suite, emoji_splits

FOLDS = 4
SOURCES = ("tuxpaint", "openclipart", "scratch", "emoji")
PLAIN = dict(k=64, p=8.0, center=False)
CSA_GRID = [dict(reg=r, dims=d, power=w) for r, d, w in itertools.product((1.0, 3.0, 10.0, 30.0, 100.0),
                                                                         (None, 64, 128), (1.0, 2.0))]
NNN_GRID = [dict(alpha=a, k=k) for a, k in itertools.product((0.25, 0.5, 0.75, 1.0), (4, 16, 64))]
METRICS = ("R@1", "R@10", "MRR")


def split(names, salt: str = ""):
    """(anchor rows, query rows, validation folds of the anchor rows) by stable hashes of the concept."""
    return concept_split(names, FOLDS, salt)


def image_logits(paths: List[str], cache_key: str, show_progress_bar: Optional[bool] = None) -> np.ndarray:
    """ImageNet-1k logits of the packaged EfficientNet-Lite0's own classifier head, cached on disk."""
    import hashlib

    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import data_dir

    key = hashlib.sha256(("\n".join(paths) + cache_key).encode()).hexdigest()[:24]
    path = data_dir("logits") / f"{key}.npy"
    if path.is_file():
        x = np.load(path, allow_pickle=False)
        if x.shape == (len(paths), 1000):
            return x
    _, logits = load_encoder("efficientnet-lite0", "image").encode_labelled(paths, batch_size=64,
                                                                            show_progress_bar=show_progress_bar)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, logits, allow_pickle=False)
    return logits


def label_bridge(logits: np.ndarray, classes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(queries x gallery) cosine of each text query with each image's label vector."""
    from retrieval.encoders.labels import label_vectors

    qn = l2_normalise(q, dtype=None)
    return qn @ label_vectors(logits, classes).T


class PictureTask:
    """Text -> image: anchors (text, image), queries (text), gallery (image) with its classifier
    logits; row i of ``q`` matches row i of ``g``. ``background``: (texts, images) of a background
    bank from another domain (retrieval/build/background.py), or None."""

    def __init__(self, at, ai, q, g, g_logits, classes, background=None):
        self.at, self.ai, self.q, self.g, self.g_logits, self.classes = at, ai, q, g, g_logits, classes
        self.background = background

    def asif_parts(self, k, p, center, whiten=0.0, background=0.0):
        """(primary ASIF scores, secondary dense relative cosine, the anchor captions' primary scores
        against the gallery: the reference bank of the hubness correction). ``background``: the
        weight of the task's background bank, appended as the engine appends it (0: none). The
        projectors are the build's: its recipe's chains (retrieval/build/recipe.py), fitted here."""
        if background and self.background is None:
            raise ValueError("this task has no background bank")
        # k is capped at the anchors; the bank's k is the k asked for, capped at the bank, as in a build
        rec = Recipe(k=min(k, len(self.at)), p=p, kind="asif", center=center, whiten=whiten, pivot_k=k, pivot_p=p,
                     label_weight=0.0, background_weight=background or 1.0, bank_k=k)
        spec = rec.spec(n_bank=len(self.background[0]) if background else 0)
        bank = self.background if background else (None, None)
        pt, pi = fit_projector(spec, self.at, bank=bank[0]), fit_projector(spec, self.ai, bank=bank[1])
        g_rel = pi.transform(self.g)
        prim = (pt.transform(self.q) @ g_rel.T).toarray()
        sec = pt.dense(self.q) @ pi.dense(self.g).T
        hub = (pt.transform(self.at) @ g_rel.T).toarray()
        return prim, sec, hub

    def labels(self):
        return label_bridge(self.g_logits, self.classes, self.q)

    def score(self, method: str, cfg: Dict) -> np.ndarray:
        if method == "asif":  # the relative route, plus the label bridge when cfg has a weight
            prim, sec, _ = self.asif_parts(**cfg["asif"])
            w = cfg.get("w", 0.0)
            return lexicographic(prim + w * self.labels() if w else prim, sec)
        if method == "asif+nnn":
            prim, sec, bank = self.asif_parts(**cfg["asif"])
            return lexicographic(M.hubness_corrected(prim, bank, **cfg["nnn"]), sec)
        if method == "procrustes":
            return M.translate(self.at, self.ai, self.q, self.g)
        if method == "csa":
            return M.csa(self.at, self.ai, self.q, self.g, **cfg["csa"])
        if method == "labels":
            return self.labels()
        raise KeyError(method)

    def metrics(self, method: str, cfg: Dict) -> Dict[str, float]:
        return retrieval_metrics(self.score(method, cfg), np.arange(len(self.q)))


def mean_val(tasks, method, cfg) -> Dict[str, float]:
    ms = [t.metrics(method, cfg) for t in tasks]
    return {k: float(np.mean([m[k] for m in ms])) for k in METRICS}


def choose(tasks, method, base: Dict, key: str, grid):
    """The best of ``grid`` for ``base[key]`` by mean validation R@10, then MRR."""
    best, best_m = None, None
    for g in grid:
        cfg = dict(base, **{key: g})
        m = mean_val(tasks, method, cfg)
        if best_m is None or (m["R@10"], m["MRR"]) > (best_m["R@10"], best_m["MRR"]):
            best, best_m = cfg, m
    return best, best_m


def background_bank(name: str, image_encoder, text_encoder, show_progress_bar=None):
    """(texts, images, what it is) of the background bank a source's default is measured with: the
    engine's default bank (every Noto emoji, captioned as the engine captions it) for the picture
    sources; for emoji, whose query concepts that bank holds, the pairs of the other picture sources
    (those installed). None when none can be had."""
    from retrieval.build.background import TEMPLATE
    from retrieval.errors import InputError
    from retrieval.evaluation.data import load_emoji, load_pictures

    if name != "emoji":
        data = load_emoji(image_encoder, text_encoder, [TEMPLATE], show_progress_bar)
        return data.texts[TEMPLATE], data.images["noto"], f"the engine's emoji bank ({len(data.names)} Noto emoji)"
    parts = []
    for other in SOURCES:
        if other != "emoji":
            try:
                parts.append((other, load_pictures(other, image_encoder, text_encoder, show_progress_bar)))
            except InputError:
                continue
    if not parts:
        return None
    return (np.vstack([d.texts for _, d in parts]), np.vstack([d.images for _, d in parts]),
            f"the pairs of {', '.join(o for o, _ in parts)} ({sum(len(d.names) for _, d in parts)})")


def source_tasks(name: str, image_encoder, text_encoder, show_progress_bar=None):
    """(test task, validation tasks, anchors, background bank description) of one source."""
    from retrieval.encoders.labels import class_vectors, imagenet_names
    from retrieval.evaluation.data import load_pictures

    classes = class_vectors(text_encoder, imagenet_names())
    found = background_bank(name, image_encoder, text_encoder, show_progress_bar)
    bank, about = (found[:2], found[2]) if found else (None, "none available")
    if name == "emoji":
        import pyarrow.parquet as pq

        from retrieval.evaluation.data import data_dir, load_emoji

        data = load_emoji(image_encoder, text_encoder, [CAPTION], show_progress_bar)
        s = emoji_splits(data.names)
        T, In, It = data.texts[CAPTION], data.images["noto"], data.images["twemoji"]
        lg = image_logits([r["image"] for r in pq.read_table(data_dir("emoji") / "corpus.parquet").to_pylist()],
                          "emoji-twemoji", show_progress_bar)

        def task(a, q):
            return PictureTask(T[a], In[a], T[q], It[q], lg[q], classes, bank)
        return task(s["anchor"], s["query"]), [task(a, q) for a, q in s["folds"]], len(s["anchor"]), about
    d = load_pictures(name, image_encoder, text_encoder, show_progress_bar)
    anchor, query, folds = split(d.names, name + ":")
    lg = image_logits(d.paths, name, show_progress_bar)

    def task(a, q):
        return PictureTask(d.texts[a], d.images[a], d.texts[q], d.images[q], lg[q], classes, bank)
    return task(anchor, query), [task(a, q) for a, q in folds], len(anchor), about


def engine_default() -> Dict:
    """What ``retrieval build`` does with a single-view image anchor table, from the build's own recipe
    (k as for a set too large to cap it: each task caps it at its anchors, as a build does)."""
    rec = recipe(AnchorShape(1 << 20, "image"), None, BuildOptions())
    return {"asif": dict(k=rec.k, p=rec.p, center=rec.center, whiten=rec.whiten, background=rec.background_weight),
            "w": rec.label_weight}


def source_rows(test: PictureTask, val: List[PictureTask]) -> List[Dict]:
    """Every method's test metrics (and, where a choice was made, its validation score)."""
    default = engine_default()
    rows, truth = [], np.arange(len(test.q))

    def add(label, method, cfg, v=None):
        scores = test.score(method, cfg)
        rows.append({"method": label, "config": cfg, "val": v, **retrieval_metrics(scores, truth)})
        return query_recall(scores, truth, 10)  # per query, for the default's interval against the baseline

    n = len(test.q)
    rows.append({"method": "chance", "config": {}, "val": None, "R@1": 1 / n, "R@10": min(1.0, 10 / n),
                 "MRR": float(np.mean(1 / np.arange(1, n + 1)))})
    plain = add("plain ASIF k=64 p=8, no centring (baseline)", "asif", {"asif": PLAIN}, mean_val(val, "asif", {"asif": PLAIN}))
    add("Procrustes translation", "procrustes", {}, mean_val(val, "procrustes", {}))
    add("label bridge alone (no anchors)", "labels", {}, mean_val(val, "labels", {}))
    csa, v = choose(val, "csa", {}, "csa", CSA_GRID)
    add("CSA: regularised CCA, correlation-weighted cosine", "csa", csa, v)
    if test.background is None:  # nothing to append: the default is measured without its bank
        default = {"asif": dict(default["asif"], background=0.0), "w": default["w"]}
    rel = {"asif": default["asif"]}
    nnn, v = choose(val, "asif+nnn", rel, "nnn", NNN_GRID)
    add("default's ASIF + NNN hubness correction (reference bank: the anchor captions)", "asif+nnn", nnn, v)
    add("default's ASIF without the label bridge (route relative)", "asif", rel, mean_val(val, "asif", rel))
    unwhitened = {"asif": dict(default["asif"], whiten=0.0, background=0.0), "w": default["w"]}
    add("default without whitening or background bank", "asif", unwhitened, mean_val(val, "asif", unwhitened))
    before = {"asif": dict(default["asif"], background=0.0), "w": default["w"]}
    add("default without the background bank (the default before)", "asif", before, mean_val(val, "asif", before))
    bank = default["asif"]["background"]
    hits = add(f"**engine default**: ASIF k={default['asif']['k']} p={default['asif']['p']:g} whitened "
        f"(lambda {default['asif']['whiten']:g})" + (f" + background bank x {bank:g}" if bank else "")
        + f" + {default['w']:g} x label bridge (route relative+labels)", "asif", default, mean_val(val, "asif", default))
    rows[-1]["gain R@10"] = paired_interval(plain, hits)
    return rows


def reverse_rows(test: PictureTask) -> List[Dict]:
    """Image -> text on the same test split (each gallery picture a query, the captions the
    candidates): chance, plain ASIF, Procrustes and the engine default as the planner routes an image
    query to texts (relative: the label bridge links text to images only)."""
    default = engine_default()
    if test.background is None:
        default = {"asif": dict(default["asif"], background=0.0)}
    n, truth = len(test.q), np.arange(len(test.q))
    rows = [{"method": "chance", "R@1": 1 / n, "R@10": min(1.0, 10 / n), "MRR": float(np.mean(1 / np.arange(1, n + 1)))}]
    hits = []
    for label, cfg in (("plain ASIF k=64 p=8, no centring (baseline)", PLAIN),
                       ("**engine default** (route relative)", default["asif"])):
        prim, sec, _ = test.asif_parts(**cfg)
        scores = lexicographic(prim.T, sec.T)
        rows.append({"method": label, **retrieval_metrics(scores, truth)})
        hits.append(query_recall(scores, truth, 10))
    rows[-1]["gain R@10"] = paired_interval(*hits)
    rows.insert(2, {"method": "Procrustes translation", **retrieval_metrics(M.translate(test.ai, test.at, test.g, test.q),
                                                                            truth)})
    return rows


def run(report, ctx) -> Dict:
    """The suite: a table per source, then sources x methods (test R@10), the default marked."""
    image_encoder, text_encoder, show_progress_bar = ctx.image, ctx.text, ctx.show_progress_bar
    from retrieval.errors import InputError

    default = engine_default()
    report.text(f"""
Text -> image with **one picture per caption**, as most users' anchor sets are. Sources: Tux Paint's
stamps (Debian `tuxpaint-stamps-default`: drawings and photos with one-line descriptions), Open Clip
Art (`openclipart-svg`: clip art titled in its own metadata, rendered with cairosvg), Scratch's
costumes (`scratch`: cartoon sprites named by file) and emoji with Noto anchors only (Twemoji
gallery). Each source's concepts are split in halves by a stable hash: the anchor half gives one
picture and its caption per concept, the other half's pictures are the gallery and their captions
the queries, so no query concept is ever an anchor. Choices marked *val* were made on {FOLDS} folds
of the anchor concepts. Ties are counted fairly. The engine default is what `retrieval build` does
with such a table: ASIF k={default['asif']['k']} (at most the anchors) p={default['asif']['p']:g} after
shrinkage whitening of both sides on their anchors (lambda {default['asif']['whiten']:g}, retrieval/core/whiten.py),
plus {default['asif']['background']:g} x the score against a background bank of another domain (retrieval/build/background.py:
every Noto emoji for the picture sources; for emoji, whose query concepts that bank holds, the three picture sources'
pairs), plus {default['w']:g} x the label bridge (retrieval/encoders/labels.py). Image encoder `{image_encoder.name}`,
text `{text_encoder.name}`. The last table turns each test split round: image -> text.""")
    summary, missing = {}, []
    for name in SOURCES:
        try:
            test, val, n_anchors, bank = source_tasks(name, image_encoder, text_encoder, show_progress_bar)
        except InputError as exc:
            missing.append(f"{name}: {exc}")
            continue
        rows = source_rows(test, val)
        report.table(f"{name}: {n_anchors} anchors, {len(test.q)} test queries (text -> image); background bank: {bank}",
                     ["method", "val R@10", "R@1", "R@10", "MRR", "choice"],
                     [[r["method"], (r["val"] or {}).get("R@10", ""), r["R@1"], r["R@10"], r["MRR"],
                       _cfg(r["config"])] for r in rows])
        summary[name] = {"anchors": n_anchors, "queries": len(test.q), "background": bank, "rows": rows,
                         "image -> text": reverse_rows(test)}
    if missing:
        report.text("Not measured in this run (install the Debian package named): " + "; ".join(missing))
    if summary:
        methods = [r["method"] for r in next(iter(summary.values()))["rows"]]
        report.table("Test R@10, sources x methods (the engine default in bold in its name)", ["source"] + methods,
                     [[s] + [r["R@10"] for r in v["rows"]] for s, v in summary.items()],
                     note="Each row is one source's test split; the plain ASIF column is the baseline every "
                          "default is held against.")
        gain_rows = []
        for s, v in summary.items():
            for direction, rs in (("text -> image", v["rows"]), ("image -> text", v["image -> text"])):
                b, d = rs[1], rs[-1]  # the baseline row follows chance in both; the default is last
                gain_rows.append([f"{s}, {direction}", b["R@10"], d["R@10"], d["gain R@10"]["gain"],
                                  f"{d['gain R@10']['low']:+.3f} … {d['gain R@10']['high']:+.3f}", b["R@1"], d["R@1"]])
        report.table("The engine default against plain ASIF (test)", ["source", "plain R@10", "default R@10",
                                                                      "gain R@10", "95% interval of the gain",
                                                                      "plain R@1", "default R@1"], gain_rows,
                     note="The interval is a paired bootstrap over the test queries (10,000 resamples, "
                          "`retrieval.core.metrics.paired_interval`): how far the gain could move had the "
                          "suite held other queries of the same kind.")
    if summary:
        names = [r["method"] for r in next(iter(summary.values()))["image -> text"]]
        report.table("Image -> text, test R@10 / R@1 (each test picture a query, the test captions the candidates)",
                     ["source"] + names,
                     [[s] + [f"{r['R@10']:.3f} / {r['R@1']:.3f}" for r in v["image -> text"]] for s, v in summary.items()],
                     note="Nothing was chosen in this direction: the default is the one chosen on text -> image.")
    report.data("summary.json", summary)
    return summary


def _cfg(cfg: Dict) -> str:
    parts = []
    for key, v in cfg.items():
        parts.append(f"{key} {v}" if not isinstance(v, dict) else
                     f"{key}(" + ", ".join(f"{a}={b}" for a, b in v.items()) + ")")
    return "; ".join(parts)


SUITE = Suite("pictures", "text->image retrieval with one picture per caption in other domains (Tux Paint stamps, "
              "Open Clip Art, Scratch costumes, emoji with Noto anchors only): baselines, CSA, hubness correction, "
              "the label bridge and the default", run)
