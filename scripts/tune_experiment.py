"""build --tune against the defaults on held-out queries, for the packaged encoders and two others.

Each data set is split by concept (retrieval/core/folds.py, as the suites split): one half is the
anchors, the other half the test queries (text -> media and media -> text, R@10, both directions'
queries pooled). ``retrieval.build.tuning.tune`` sees the anchor half only (its own concept folds),
as ``build --tune`` does; the test half decides nothing. Rows: plain ASIF (k=64, p=8, no centring,
no bank, no label bridge, the relative route), the default build (the recipe's default for that
encoder and those anchors, each direction by the planner's priors), and the tuned build (the tuned
recipe and weights, each direction by the route --tune chose), with the paired 95 % interval of
tuned - default. Tux Paint, Scratch and Open Clip Art have the build's default emoji bank beside their anchors;
the emoji set and the sounds have none (a build on sounds adds none; on emoji anchors the bank would
hold the test concepts). The label bridge (ImageNet head of EfficientNet-Lite0) is part of the
default and tuned rows of the picture sources where the image network is Lite0 (lite0, lite0-multi);
the Lite2 rows and the emoji set have none. The second table takes every route per direction.
--tune's margin (fold_scores.margin) was raised from one standard error to a Bonferroni-corrected
5 % test after this script's first run with the bank and the label bridge (mean -0.012); Open Clip
Art was added after that change, as data the rule was not revised on. ``--splits N`` repeats
everything over N concept splits (split 0 is the one above; split s > 0 salts the hash with s), so the
average gain rests on more test halves than one.

    .venv/bin/python scripts/tune_experiment.py --out results/experiments/tune/README.md
    .venv/bin/python scripts/tune_experiment.py --splits 4 --out results/experiments/tune/splits.md
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.tune_routes import LABELLED, priors_choice
from retrieval.build.tuning import tune
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.projector import fit_projector
from retrieval.core.ranking import rrf
from retrieval.core.translation import Translator
from retrieval.datasets.sounds import CAPTION as SOUND_CAPTION
from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.encoders.labels import class_vectors, imagenet_names, label_vectors
from retrieval.errors import InputError
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_emoji, load_pictures, load_sounds
from retrieval.evaluation.suites.pictures import image_logits

IMAGE_ENCODERS = ("efficientnet-lite0-multi", "efficientnet-lite0", "efficientnet-lite2")
LITE0_HEAD = ("efficientnet-lite0-multi", "efficientnet-lite0")  # the networks image_logits's head belongs to
PICTURES = ("tuxpaint", "scratch", "openclipart", "emoji")
CAPTION = "an emoji of {}"


def relative_scores(rec, at, am, qt, qm, bank) -> np.ndarray:
    """Test texts (rows) against test media, as a build with ``rec`` (and ``bank``: media, text) scores them."""
    spec = rec.spec(n_bank=0 if bank is None else len(bank[0]))
    pt = fit_projector(spec, at, bank=None if bank is None else bank[1])
    pm = fit_projector(spec, am, bank=None if bank is None else bank[0])
    return (pt.transform(qt) @ pm.transform(qm).T).toarray(), pt.dense(qt) @ pm.dense(qm).T


def route_hits(rec, at, am, qt, qm, bank, qlab) -> dict:
    """{direction: {route: R@10 per test query}}: relative (``rec``), translation, their fusion, and
    relative+labels for texts where the test media have label vectors (``qlab``)."""
    prim, sec = relative_scores(rec, at, am, qt, qm, bank)
    rel, truth, out = lexicographic(prim, sec), np.arange(len(qt)), {}
    for d, (xa, ya, xq, yq, s) in (("text->media", (at, am, qt, qm, rel)), ("media->text", (am, at, qm, qt, rel.T))):
        t = Translator("orthogonal").fit(xa, ya)
        tr = t.transform_scaled(xq) @ t.scale_target(yq).T
        out[d] = {r: query_recall(x, truth, 10) for r, x in (("relative", s), ("translation", tr),
                                                             ("fusion", rrf(s, tr)))}
    if qlab is not None:
        qn = qt / np.linalg.norm(qt, axis=1, keepdims=True)
        out["text->media"][LABELLED] = query_recall(lexicographic(prim + rec.label_weight * (qn @ qlab.T), sec), truth, 10)
    return out


def data_sets(image_encoder: str):
    """(name, modality, concepts, media of anchors' rows, media of queries' rows, texts, bank or None,
    label vectors of the media rows or None) of each set."""
    img, txt = load_encoder(image_encoder, "image"), load_encoder(DEFAULT_ENCODERS["text"], "text")
    em = load_emoji(img, txt, [CAPTION], False)
    bank = (em.images["noto"], em.texts[CAPTION])  # the build's default bank: every Noto emoji, "an emoji of {}"
    classes = class_vectors(txt, imagenet_names())
    for source in PICTURES:
        if source == "emoji":  # anchors drawn by Noto, queries' pictures by Twemoji, as the pictures suite
            yield source, "image", em.names, em.images["noto"], em.images["twemoji"], em.texts[CAPTION], None, None
        else:
            d = load_pictures(source, img, txt, False)
            labels = (label_vectors(image_logits(d.paths, source), classes) if image_encoder in LITE0_HEAD
                      else None)
            yield source, "image", d.names, d.images, d.images, d.texts, bank, labels
    if image_encoder == IMAGE_ENCODERS[0]:  # sounds once: their encoder is the same in every pass
        s = load_sounds(load_encoder(DEFAULT_ENCODERS["audio"], "audio"), txt, SOUND_CAPTION, False)
        yield "sounds", "audio", s.words, s.audio, s.audio, s.captions, None, None


def answered(got: dict, routes: dict) -> np.ndarray:
    """Per test query (texts first, then media): R@10 of the route taken in each direction."""
    return np.concatenate([got[d][routes[d]] for d in ("text->media", "media->text")])


def split_salt(name: str, split: int) -> str:
    return name + ":" if split == 0 else f"{name}:{split}:"


def measure(split, encoder, name, modality, concepts, media_a, media_q, text, bank, labels) -> dict:
    anchor, query, _ = concept_split([str(c) for c in concepts], 4, salt=split_salt(name, split))
    at, am, qt, qm = text[anchor], media_a[anchor], text[query], media_q[query]
    alab, qlab = (None, None) if labels is None else (labels[anchor], labels[query])
    rec = recipe(AnchorShape(len(anchor), modality), encoder if modality == "image" else DEFAULT_ENCODERS["audio"],
                 BuildOptions())
    t0 = time.perf_counter()
    tuned = tune(am, at, [str(c) for c in concepts[anchor]], rec, bank=bank, modality=modality, labels=alab)
    seconds = time.perf_counter() - t0
    plain = dataclasses.replace(rec, k=min(64, len(anchor)), p=8.0, center=False, whiten=0.0)
    got = {"plain": route_hits(plain, at, am, qt, qm, None, None), "default": route_hits(rec, at, am, qt, qm, bank, qlab),
           "tuned": route_hits(tuned.recipe, at, am, qt, qm, bank, qlab)}
    names = {"text->media": ("text", modality), "media->text": (modality, "text")}
    taken = {"plain": {d: "relative" for d in names},
             "default": {d: priors_choice(*names[d], got["default"][d]) for d in names},
             "tuned": {d: tuned.record["routes"]["{}->{}".format(*names[d])]["route"] for d in names}}
    h = {label: answered(got[label], taken[label]) for label in got}
    return {"split": split, "encoder": encoder, "data": name, "anchors": len(anchor), "queries": 2 * len(query),
            "labels": labels is not None, **{label: float(v.mean()) for label, v in h.items()},
            "gain": paired_interval(h["default"], h["tuned"]), "record": tuned.record, "tune_s": seconds,
            "routes": routes_row(tuned, got["tuned"], taken, names)}


def routes_row(tuned, got: dict, taken: dict, names: dict) -> dict:
    """Per direction: each route's test R@10 (tuned recipe), the priors' route and --tune's, and tuned - priors."""
    out = {}
    for d, (q, t) in names.items():
        prior_route, chosen = taken["default"][d], taken["tuned"][d]
        out[f"{q}->{t}"] = {"scores": {r: float(v.mean()) for r, v in got[d].items()}, "priors": prior_route,
                            "tuned": chosen, "validation": tuned.record["routes"][f"{q}->{t}"]["scores"],
                            "gain": paired_interval(got[d][prior_route], got[d][chosen])}
    return out


def said_data(r) -> str:
    return r["data"] + (f" (split {r['split']})" if r["split"] else "")


def routes_table(rows) -> list:
    lines = ["| image encoder | data | direction | relative | relative+labels | translation | fusion | priors' route | "
             "--tune's route (its validation R@10) | tuned - priors [95 % CI] |", "|---|---|---|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        for d, x in r["routes"].items():
            g, v, sc = x["gain"], x["validation"], x["scores"]
            lab = f"{sc[LABELLED]:.3f}" if LABELLED in sc else "-"
            lines.append(f"| {r['encoder']} | {said_data(r)} | {d} | {sc['relative']:.3f} | {lab} | {sc['translation']:.3f} | "
                         f"{sc['fusion']:.3f} | {x['priors']} | {x['tuned']} ({v[x['tuned']]:.3f}) | "
                         f"{g['gain']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] |")
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
        for what, key in (("bank weight", "bank"), ("label weight", "labels")):
            if rec.get(key):
                chosen += f"; {what} {rec[key]['default']:g} -> {rec[key]['chosen']:g}"
        lines.append(f"| {r['encoder']} | {said_data(r)} | {r['anchors']} | {r['queries']} | {r['plain']:.3f} | "
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


def split_means(rows) -> str:
    if len({r["split"] for r in rows}) == 1:
        return ""
    by = {}
    for r in rows:
        by.setdefault(r["split"], []).append(r["gain"]["gain"])
    return " Per split: " + ", ".join(f"{s}: {np.mean(g):+.4f}" for s, g in sorted(by.items())) + "."


def main() -> None:
    args, start = out_args(__doc__, lambda ap: ap.add_argument(
        "--splits", type=int, default=1, help="concept splits to repeat over (default 1: the one the README reports)"))
    data = [(enc, ds) for enc in IMAGE_ENCODERS for ds in data_sets(enc)]
    rows, skipped = [], []
    for s, (enc, ds) in ((s, x) for s in range(args.splits) for x in data):
        try:
            rows.append(measure(s, enc, *ds))
        except InputError as e:  # too few concepts in this split's anchor half: a build refuses --tune
            skipped.append(f"{enc} / {said_data({'data': ds[0], 'split': s})}: {e}")
    gains = [r["gain"]["gain"] for r in rows]
    command = "scripts/tune_experiment.py" + (f" --splits {args.splits}" if args.splits > 1 else "")
    lines = ["# build --tune against the defaults", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             *table(rows), "", f"Mean tuned - default over the {len(rows)} rows: {np.mean(gains):+.4f}; rows where the "
             f"interval lies wholly below 0: {sum(r['gain']['high'] < 0 for r in rows)}; wholly above 0: "
             f"{sum(r['gain']['low'] > 0 for r in rows)}.{split_means(rows)}", "",
             *([f"Not measured ({len(skipped)}), as --tune refuses them: " + "; ".join(skipped), ""] if skipped else []), "## Routes per direction (test R@10)", "",
             *routes_table(rows), "", route_summary(rows), "",
             f"`.venv/bin/python {command} --out {args.out}` "
             f"({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {"rows": rows})


if __name__ == "__main__":
    main()
