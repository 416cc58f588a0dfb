"""emoji-xstyle: text <-> image retrieval across emoji art styles, seen and unseen concepts, sweeps
and baselines; the views section (anchors drawn several ways) and the held-out OpenMoji gallery."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from retrieval.core.metrics import retrieval_metrics
from retrieval.datasets.emoji import SVG_STYLES
from retrieval.evaluation import methods as M
from retrieval.evaluation.harness import (
    CAPTION,
    FEWER,
    FOLDS,
    KS,
    LITE_PAIR,
    METRIC_COLS,
    MULTI,
    PS,
    TEMPLATES,
    EmojiTask,
    Suite,
    anchor_views,
    chance,
    choose,
    emoji_splits,
    fewer_views,
    lite_pair_available,
    lite_pair_views_kp,
    row,
)
from retrieval.evaluation.report import Report


def engine_views_recipe(task: EmojiTask, encoder: str):
    """What ``retrieval build`` makes of an anchor table with views for ``encoder``: the build's recipe."""
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe

    return recipe(AnchorShape(task.n_anchors, "image", has_views=True), encoder, BuildOptions())


def with_bank(task: EmojiTask, rec, bank) -> Dict[str, float]:
    """``task``'s metrics with the projectors ``rec`` (a build's recipe) makes with a background bank
    ((texts, images)) as their bank block: the bank's images through the task's style normaliser, as a
    build's are. The task's images are normalised already (harness.EmojiTask), so the chains start
    from unit rows rather than the ``style`` step."""
    from retrieval.core.metrics import lexicographic
    from retrieval.core.projector import fit_projector

    bt, bi = bank
    bi = task.style.transform(bi) if task.style is not None else bi
    bq, bg = (bt, bi) if task.direction == "t2i" else (bi, bt)
    spec = rec.spec(n_bank=len(bt))
    pq_, pg = fit_projector(spec, task.aq, bank=bq), fit_projector(spec, task.ag, bank=bg)
    scores = lexicographic((pq_.transform(task.q) @ pg.transform(task.g).T).toarray(), pq_.dense(task.q) @ pg.dense(task.g).T)
    return retrieval_metrics(scores, np.arange(len(task.q)))


def choices(report: Report, data, s) -> Tuple[Dict, Dict, Dict, Dict]:
    """(raw, centred, pooled, engine default without views) configurations chosen on the validation
    folds of the anchor concepts, and their table."""
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
    return chosen_raw, chosen, chosen_pooled, chosen_default


def method_rows(task: EmojiTask, pooled_task: Optional[EmojiTask], chosen_raw: Dict, chosen: Dict,
                chosen_pooled: Dict, chosen_default: Dict) -> List:
    """Every method's row on one task, at the configurations chosen on validation."""
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


def emoji_xstyle(report: Report, data, more: Optional[Dict] = None, bank=None) -> Dict:
    """``bank``: (texts, images, what it is) of a background bank for the default encoder's views
    rows (its images encoded by that encoder), or None."""
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

    chosen_raw, chosen, chosen_pooled, chosen_default = choices(report, data, s)
    headline = {}
    for a_style, g_style in (("noto", "twemoji"), ("twemoji", "noto")):
        for direction, label in (("t2i", "text -> image"), ("i2t", "image -> text")):
            for regime, anchors in (("unseen", s["anchor"]), ("seen", s["all"])):
                task = EmojiTask(data, anchors, s["query"], anchor_style=a_style, gallery_style=g_style, direction=direction)
                pooled = (EmojiTask(data, anchors, s["query"], anchor_style=a_style, gallery_style=g_style,
                                    direction=direction, pooled=True) if regime == "unseen" else None)
                rows = method_rows(task, pooled, chosen_raw, chosen, chosen_pooled, chosen_default)
                report.table(f"{label}, {regime}: anchors {a_style}, gallery {g_style}", ["method"] + METRIC_COLS, rows)
                headline[(a_style, direction, regime)] = rows

    if "openmoji" in data.images:
        held_out_style(report, data, s, chosen_default, chosen_pooled)
        views_section(report, {"efficientnet-lite0": data, **(more or {})}, s, chosen_default, headline, bank)
    else:
        report.text("The held-out third style (OpenMoji) was not available in this run (needs npm and cairosvg).")

    sweeps(report, data, s, chosen)
    anchor_counts(report, data, s, chosen)
    templates(report, data, s, chosen)
    return {"chosen": chosen, "chosen_pooled": chosen_pooled, "chosen_default": chosen_default, "headline": headline}


def sweeps(report: Report, data, s, chosen: Dict) -> None:
    """k and p swept on the test split: reported for the curves' shape; nothing here is used to choose."""
    task = EmojiTask(data, s["anchor"], s["query"])
    ks = [k for k in KS if k <= task.n_anchors]
    report.plot("k_sweep.png", "R@10 vs k (unseen, text->image, Noto->Twemoji, centred)", "k", "R@10",
                {f"p={p:g}": (ks, [task.evaluate(M.asif, k=k, p=p, center=True)["R@10"] for k in ks]) for p in (1, 4, 8)},
                logx=True, hline=10 / len(task.q))
    report.plot("p_sweep.png", f"R@10 vs p (unseen, text->image, k={chosen['k']}, centred)", "p", "R@10",
                {"ASIF": (list(PS), [task.evaluate(M.asif, k=chosen["k"], p=p, center=True)["R@10"] for p in PS])},
                logx=True, hline=10 / len(task.q))


def anchor_counts(report: Report, data, s, chosen: Dict) -> None:
    """R@10 against the number of anchors kept, chosen at random, by farthest point or by k-means."""
    task = EmojiTask(data, s["anchor"], s["query"])
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


def templates(report: Report, data, s, chosen: Dict) -> None:
    """Caption templates, chosen on validation, reported on test."""
    rows = []
    for t in TEMPLATES:
        v = np.mean([EmojiTask(data, a, q, template=t).evaluate(M.asif, **chosen)["R@10"] for a, q in s["folds"]])
        te = EmojiTask(data, s["anchor"], s["query"], template=t).evaluate(M.asif, **chosen)
        rows.append([f'"{t}"', float(v), te["R@1"], te["R@10"]])
    report.table("Caption template (same template for anchor captions and queries; centred ASIF)",
                 ["template", "mean val R@10", "test R@1", "test R@10"], rows)


LAMBDAS = (0.3, 1.0, 3.0)


def views_section(report: Report, datas: Dict, s, chosen_default: Dict, headline: Dict, bank=None) -> None:
    """Anchor concepts drawn in styles other than the gallery's, merged into prototypes, with a
    style normaliser learned from them (retrieval/core/style.py); chosen on validation like the rest."""
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
DEFAULT_VIEWS_P), and k=256 p=4 without; with views a build also appends its background bank
(retrieval/build/background.py: every Noto emoji, which would hold the query concepts here, so the row
marked *engine default* uses the three picture sources' pairs of `retrieval eval --suite pictures`
instead). These rows leave the label bridge out (route relative).""")
    chosen = views_choices(report, datas, s, by_gallery["twemoji"], chosen_default)
    views_tables(report, datas, s, by_gallery, chosen, chosen_default, headline, bank)


def views_choices(report: Report, datas: Dict, s, views, chosen_default: Dict) -> Dict:
    """(encoder, setting) -> the k, p chosen on the seen + unseen validation folds for each views
    setting, with their table, and lambda's on the unseen folds."""
    chosen = {}
    choice_rows = []
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
    if pair_kp is not None and {"k": pair_kp["k"], "p": pair_kp["p"]} != lite_pair_views_kp():
        report.text(f"**Stale:** the build's views defaults give {LITE_PAIR} {lite_pair_views_kp()}, but "
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
    return chosen


def views_tables(report: Report, datas: Dict, s, by_gallery: Dict, chosen: Dict, chosen_default: Dict,
                 headline: Dict, bank=None) -> None:
    """The test tables of the views section, at the configurations chosen on validation; with a bank,
    the engine default (the build's recipe for views) as a row of its own."""
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
                        if key == "wccn" and enc == MULTI and bank is not None:  # the engine default with views
                            rec = engine_views_recipe(t, enc)
                            rows.append(row(f"**{enc}: views {' + '.join(vs)}, prototypes + WCCN, k={rec.k} "
                                            f"p={rec.p:g} + background bank x {rec.background_weight:g} (engine "
                                            f"default; bank: {bank[2]}, k={min(rec.bank_k, len(bank[0]))})**",
                                            with_bank(t, rec, bank[:2])))
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


def run(report: Report, ctx) -> Dict:
    from retrieval.encoders import load_encoder
    from retrieval.evaluation.data import load_emoji

    data = load_emoji(ctx.image, ctx.text, list(TEMPLATES), ctx.show_progress_bar, svg_styles=True)
    more = {}
    if len(anchor_views(data, "twemoji")) > 1:  # the views section needs a style besides Noto and Twemoji
        names = [MULTI] + ([LITE_PAIR] if lite_pair_available() else [])
        for enc_name in names:
            more[enc_name] = load_emoji(load_encoder(enc_name, "image"), ctx.text, [CAPTION], ctx.show_progress_bar,
                                        svg_styles=True)
        ctx.encoders["image (views section)"] = ", ".join(names)
    bank = None
    if MULTI in more:  # the engine's emoji bank would hold the query concepts: the picture sources' pairs
        from retrieval.evaluation.suites.pictures import background_bank

        bank = background_bank("emoji", load_encoder(MULTI, "image"), ctx.text, ctx.show_progress_bar)
    return emoji_xstyle(report, data, more, bank)


# It keeps the pre-project encoder for its baseline tables (the starting point); its views
# section adds the multi-depth readout.
SUITE = Suite("emoji-xstyle", "text<->image retrieval across emoji art styles, seen and unseen concepts, sweeps and "
              "baselines", run, image_encoder="efficientnet-lite0")
