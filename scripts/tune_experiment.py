"""build --tune against the defaults on held-out queries, for the packaged encoders and two others.

Each data set is split by concept (retrieval/core/folds.py, as the suites split): one half is the
anchors, the other half the test queries (text -> media and media -> text, R@10, both directions'
queries pooled). ``retrieval.build.tuning.tune`` sees the anchor half only (its own concept folds),
as ``build --tune`` does; the test half decides nothing. Rows: plain ASIF (k=64, p=8, no centring),
the recipe's default for that encoder and those anchors, and the tuned recipe, with the paired 95 %
interval of tuned - default. The anchors route alone: the background bank and the label bridge,
which --tune leaves at their defaults, are not part of either row.

    .venv/bin/python scripts/tune_experiment.py --out results/experiments/tune/README.md
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.tuning import tune
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.projector import fit_projector
from retrieval.datasets.sounds import CAPTION as SOUND_CAPTION
from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_emoji, load_pictures, load_sounds

IMAGE_ENCODERS = ("efficientnet-lite0-multi", "efficientnet-lite0", "efficientnet-lite2")
PICTURES = ("tuxpaint", "scratch", "emoji")
CAPTION = "an emoji of {}"


def hits(rec, at, am, qt, qm) -> np.ndarray:
    """Per test query (texts first, then media): R@10 as a build with ``rec`` scores it."""
    spec = rec.spec()
    pt, pm = fit_projector(spec, at), fit_projector(spec, am)
    s = lexicographic((pt.transform(qt) @ pm.transform(qm).T).toarray(), pt.dense(qt) @ pm.dense(qm).T)
    truth = np.arange(len(qt))
    return np.concatenate([query_recall(s, truth, 10), query_recall(s.T, truth, 10)])


def data_sets(image_encoder: str):
    """(name, modality, concepts, media of anchors' rows, media of queries' rows, texts) of each set."""
    img, txt = load_encoder(image_encoder, "image"), load_encoder(DEFAULT_ENCODERS["text"], "text")
    for source in PICTURES:
        if source == "emoji":  # anchors drawn by Noto, queries' pictures by Twemoji, as the pictures suite
            d = load_emoji(img, txt, [CAPTION], False)
            yield source, "image", d.names, d.images["noto"], d.images["twemoji"], d.texts[CAPTION]
        else:
            d = load_pictures(source, img, txt, False)
            yield source, "image", d.names, d.images, d.images, d.texts
    if image_encoder == IMAGE_ENCODERS[0]:  # sounds once: their encoder is the same in every pass
        s = load_sounds(load_encoder(DEFAULT_ENCODERS["audio"], "audio"), txt, SOUND_CAPTION, False)
        yield "sounds", "audio", s.words, s.audio, s.audio, s.captions


def measure(encoder, name, modality, concepts, media_a, media_q, text) -> dict:
    anchor, query, _ = concept_split([str(c) for c in concepts], 4, salt=name + ":")
    at, am, qt, qm = text[anchor], media_a[anchor], text[query], media_q[query]
    rec = recipe(AnchorShape(len(anchor), modality), encoder if modality == "image" else DEFAULT_ENCODERS["audio"],
                 BuildOptions())
    t0 = time.perf_counter()
    tuned = tune(am, at, [str(c) for c in concepts[anchor]], rec)
    seconds = time.perf_counter() - t0
    plain = dataclasses.replace(rec, k=min(64, len(anchor)), p=8.0, center=False, whiten=0.0)
    h = {label: hits(r, at, am, qt, qm) for label, r in (("plain", plain), ("default", rec), ("tuned", tuned.recipe))}
    return {"encoder": encoder, "data": name, "anchors": len(anchor), "queries": 2 * len(query),
            **{label: float(v.mean()) for label, v in h.items()},
            "gain": paired_interval(h["default"], h["tuned"]), "record": tuned.record, "tune_s": seconds}


def table(rows) -> list:
    def said(r):
        return f"k={r['k']} p={r['p']:g}" + (f" white {r['whiten']:g}" if r["whiten"] else " centred" if r["center"] else "")
    lines = ["| image encoder | data | anchors | test queries | plain ASIF | default | **--tune** | tuned - default "
             "[95 % CI] | default -> chosen (validation) | tune s |", "|---|---|---:|---:|---:|---:|---:|---|---|---:|"]
    for r in rows:
        g, rec = r["gain"], r["record"]
        chosen = ("kept the default" if rec["chosen"] == rec["default"] else
                  f"{said(rec['default'])} -> {said(rec['chosen'])}")
        lines.append(f"| {r['encoder']} | {r['data']} | {r['anchors']} | {r['queries']} | {r['plain']:.3f} | "
                     f"{r['default']:.3f} | **{r['tuned']:.3f}** | {g['gain']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] | "
                     f"{chosen} ({rec['default']['score']:.3f} -> {rec['chosen']['score']:.3f}) | {r['tune_s']:.1f} |")
    return lines


def main() -> None:
    args, start = out_args(__doc__)
    rows = [measure(enc, *ds) for enc in IMAGE_ENCODERS for ds in data_sets(enc)]
    gains = [r["gain"]["gain"] for r in rows]
    lines = ["# build --tune against the defaults", "", __doc__.split("\n\n")[1].replace("\n", " "), "",
             *table(rows), "", f"Mean tuned - default over the {len(rows)} rows: {np.mean(gains):+.4f}; rows where the "
             f"interval lies wholly below 0: {sum(r['gain']['high'] < 0 for r in rows)}; wholly above 0: "
             f"{sum(r['gain']['low'] > 0 for r in rows)}.", "",
             f"`.venv/bin/python scripts/tune_experiment.py --out results/experiments/tune/README.md` "
             f"({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {"rows": rows})


if __name__ == "__main__":
    main()
