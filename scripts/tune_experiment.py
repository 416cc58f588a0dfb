"""build --tune against the defaults on held-out queries, for the packaged encoders and two others.

Each data set is split by concept (retrieval/core/folds.py, as the suites split): one half is the
anchors, the other half the test queries (text -> media and media -> text, R@10, both directions'
queries pooled). ``retrieval.build.tuning.tune`` sees the anchor half only (its own concept folds),
as ``build --tune`` does; the test half decides nothing. Rows: plain ASIF (k=64, p=8, no centring,
no bank), the recipe's default for that encoder and those anchors, and the tuned recipe, with the
paired 95 % interval of tuned - default. Tux Paint and Scratch have the build's default emoji bank
beside their anchors (its weight is tuned too); the emoji set and the sounds have none (a build on
sounds adds none; on emoji anchors the bank would hold the test concepts). The label bridge is part
of no row. The second table takes the relative route of the tuned recipe, the translation route and
their fusion per direction: the route the planner's priors take against the route --tune chose.

    .venv/bin/python scripts/tune_experiment.py --out results/experiments/tune/README.md
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.tune_routes import ROUTES, priors_choice
from retrieval.build.tuning import tune
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.projector import fit_projector
from retrieval.core.ranking import rrf
from retrieval.core.translation import Translator
from retrieval.datasets.sounds import CAPTION as SOUND_CAPTION
from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_emoji, load_pictures, load_sounds

IMAGE_ENCODERS = ("efficientnet-lite0-multi", "efficientnet-lite0", "efficientnet-lite2")
PICTURES = ("tuxpaint", "scratch", "emoji")
CAPTION = "an emoji of {}"


def relative_scores(rec, at, am, qt, qm, bank) -> np.ndarray:
    """Test texts (rows) against test media, as a build with ``rec`` (and ``bank``: media, text) scores them."""
    spec = rec.spec(n_bank=0 if bank is None else len(bank[0]))
    pt = fit_projector(spec, at, bank=None if bank is None else bank[1])
    pm = fit_projector(spec, am, bank=None if bank is None else bank[0])
    return lexicographic((pt.transform(qt) @ pm.transform(qm).T).toarray(), pt.dense(qt) @ pm.dense(qm).T)


def hits(rec, at, am, qt, qm, bank=None) -> np.ndarray:
    """Per test query (texts first, then media): R@10 as a build with ``rec`` scores it."""
    s, truth = relative_scores(rec, at, am, qt, qm, bank), np.arange(len(qt))
    return np.concatenate([query_recall(s, truth, 10), query_recall(s.T, truth, 10)])


def route_hits(rec, at, am, qt, qm, bank) -> dict:
    """{direction: {route: R@10 per test query}}: relative (``rec``), translation and their fusion."""
    rel, truth, out = relative_scores(rec, at, am, qt, qm, bank), np.arange(len(qt)), {}
    for d, (xa, ya, xq, yq, s) in (("text->media", (at, am, qt, qm, rel)), ("media->text", (am, at, qm, qt, rel.T))):
        t = Translator("orthogonal").fit(xa, ya)
        tr = t.transform_scaled(xq) @ t.scale_target(yq).T
        out[d] = {r: query_recall(x, truth, 10) for r, x in (("relative", s), ("translation", tr),
                                                             ("fusion", rrf(s, tr)))}
    return out


def data_sets(image_encoder: str):
    """(name, modality, concepts, media of anchors' rows, media of queries' rows, texts, bank or None) of each set."""
    img, txt = load_encoder(image_encoder, "image"), load_encoder(DEFAULT_ENCODERS["text"], "text")
    em = load_emoji(img, txt, [CAPTION], False)
    bank = (em.images["noto"], em.texts[CAPTION])  # the build's default bank: every Noto emoji, "an emoji of {}"
    for source in PICTURES:
        if source == "emoji":  # anchors drawn by Noto, queries' pictures by Twemoji, as the pictures suite
            yield source, "image", em.names, em.images["noto"], em.images["twemoji"], em.texts[CAPTION], None
        else:
            d = load_pictures(source, img, txt, False)
            yield source, "image", d.names, d.images, d.images, d.texts, bank
    if image_encoder == IMAGE_ENCODERS[0]:  # sounds once: their encoder is the same in every pass
        s = load_sounds(load_encoder(DEFAULT_ENCODERS["audio"], "audio"), txt, SOUND_CAPTION, False)
        yield "sounds", "audio", s.words, s.audio, s.audio, s.captions, None


def measure(encoder, name, modality, concepts, media_a, media_q, text, bank) -> dict:
    anchor, query, _ = concept_split([str(c) for c in concepts], 4, salt=name + ":")
    at, am, qt, qm = text[anchor], media_a[anchor], text[query], media_q[query]
    rec = recipe(AnchorShape(len(anchor), modality), encoder if modality == "image" else DEFAULT_ENCODERS["audio"],
                 BuildOptions())
    t0 = time.perf_counter()
    tuned = tune(am, at, [str(c) for c in concepts[anchor]], rec, bank=bank, modality=modality)
    seconds = time.perf_counter() - t0
    plain = dataclasses.replace(rec, k=min(64, len(anchor)), p=8.0, center=False, whiten=0.0)
    h = {"plain": hits(plain, at, am, qt, qm), "default": hits(rec, at, am, qt, qm, bank),
         "tuned": hits(tuned.recipe, at, am, qt, qm, bank)}
    return {"encoder": encoder, "data": name, "anchors": len(anchor), "queries": 2 * len(query),
            **{label: float(v.mean()) for label, v in h.items()},
            "gain": paired_interval(h["default"], h["tuned"]), "record": tuned.record, "tune_s": seconds,
            "routes": routes_row(tuned, route_hits(tuned.recipe, at, am, qt, qm, bank), modality)}


def routes_row(tuned, got: dict, modality: str) -> dict:
    """Per direction: each route's test R@10, the priors' route and --tune's, and tuned - priors."""
    out = {}
    for d, (q, t) in (("text->media", ("text", modality)), ("media->text", (modality, "text"))):
        prior_route, chosen = priors_choice(q, t, False), tuned.record["routes"][f"{q}->{t}"]["route"]
        out[f"{q}->{t}"] = {**{r: float(got[d][r].mean()) for r in ROUTES}, "priors": prior_route, "tuned": chosen,
                            "validation": tuned.record["routes"][f"{q}->{t}"]["scores"],
                            "gain": paired_interval(got[d][prior_route], got[d][chosen])}
    return out


def routes_table(rows) -> list:
    lines = ["| image encoder | data | direction | relative | translation | fusion | priors' route | --tune's route "
             "(validation R@10 of the three) | tuned - priors [95 % CI] |", "|---|---|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        for d, x in r["routes"].items():
            g, v = x["gain"], x["validation"]
            lines.append(f"| {r['encoder']} | {r['data']} | {d} | {x['relative']:.3f} | {x['translation']:.3f} | "
                         f"{x['fusion']:.3f} | {x['priors']} | {x['tuned']} ({v['relative']:.3f} / "
                         f"{v['translation']:.3f} / {v['fusion']:.3f}) | {g['gain']:+.3f} [{g['low']:+.3f}, "
                         f"{g['high']:+.3f}] |")
    return lines


def table(rows) -> list:
    def said(r):
        return f"k={r['k']} p={r['p']:g}" + (f" white {r['whiten']:g}" if r["whiten"] else " centred" if r["center"] else "")
    lines = ["| image encoder | data | anchors | test queries | plain ASIF | default | **--tune** | tuned - default "
             "[95 % CI] | default -> chosen (validation) | tune s |", "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        g, rec = r["gain"], r["record"]
        chosen = ("kept the default" if rec["chosen"] == rec["default"] else
                  f"{said(rec['default'])} -> {said(rec['chosen'])}")
        if rec.get("bank"):
            chosen += f"; bank weight {rec['bank']['default']:g} -> {rec['bank']['chosen']:g}"
        lines.append(f"| {r['encoder']} | {r['data']} | {r['anchors']} | {r['queries']} | {r['plain']:.3f} | "
                     f"{r['default']:.3f} | **{r['tuned']:.3f}** | {g['gain']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] | "
                     f"{chosen} ({rec['default']['score']:.3f} -> {rec['chosen']['score']:.3f}) | {r['tune_s']:.1f} |")
    return lines


def route_summary(rows) -> str:
    pairs = [x for r in rows for x in r["routes"].values()]
    moved = [x for x in pairs if x["tuned"] != x["priors"]]
    return (f"--tune left the priors' route in {len(pairs) - len(moved)} of {len(pairs)} directions and moved it in "
            f"{len(moved)}; mean tuned - priors over all {len(pairs)}: {np.mean([x['gain']['gain'] for x in pairs]):+.4f}"
            + (f", over the moved ones: {np.mean([x['gain']['gain'] for x in moved]):+.4f}; intervals wholly below 0: "
               f"{sum(x['gain']['high'] < 0 for x in moved)}, wholly above: {sum(x['gain']['low'] > 0 for x in moved)}"
               if moved else "") + ".")


def main() -> None:
    args, start = out_args(__doc__)
    rows = [measure(enc, *ds) for enc in IMAGE_ENCODERS for ds in data_sets(enc)]
    gains = [r["gain"]["gain"] for r in rows]
    lines = ["# build --tune against the defaults", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             *table(rows), "", f"Mean tuned - default over the {len(rows)} rows: {np.mean(gains):+.4f}; rows where the "
             f"interval lies wholly below 0: {sum(r['gain']['high'] < 0 for r in rows)}; wholly above 0: "
             f"{sum(r['gain']['low'] > 0 for r in rows)}.", "", "## Routes per direction (test R@10)", "",
             *routes_table(rows), "", route_summary(rows), "",
             f"`.venv/bin/python scripts/tune_experiment.py --out results/experiments/tune/README.md` "
             f"({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {"rows": rows})


if __name__ == "__main__":
    main()
