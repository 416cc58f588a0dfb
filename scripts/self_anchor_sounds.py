"""Self-anchoring on a sound corpus: named Debian sounds, half of them the anchors, the other half a
corpus of which 10 % or 30 % is captioned (3 draws, seeded as the captions suite draws).

Rows, test R@10 of the uncaptioned sounds' captions over the whole corpus half, as a build scores
text -> audio on the relative route (the recipe for sounds: no whitening, no bank, no label bridge):
the given anchors alone, the captioned sounds appended as they are, and self-anchoring as the build
does it (retrieval/build/self_anchors.py). Why sound collections do not self-anchor by default.

    .venv/bin/python scripts/self_anchor_sounds.py --out results/experiments/self_anchors_sounds.md
"""

from __future__ import annotations

import time

import numpy as np

from retrieval.build.anchors import AnchorSet
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.self_anchors import Corpus, self_anchored
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.projector import fit_projector
from retrieval.datasets.sounds import CAPTION
from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.data import load_sounds
from retrieval.evaluation.suites.captions import DRAWS, draw

FRACTIONS = (0.10, 0.30)
AUDIO = DEFAULT_ENCODERS["audio"]


def hits(rec, t, m, q, g, targets) -> np.ndarray:
    spec = rec.spec()
    pt, pm = fit_projector(spec, t), fit_projector(spec, m)
    return query_recall(lexicographic((pt.transform(q) @ pm.transform(g).T).toarray(), pt.dense(q) @ pm.dense(g).T),
                        targets, 10)


def one_draw(given, texts, audio, captions, captioned) -> dict:
    o = BuildOptions(audio_encoder=AUDIO, self_anchors=True)
    uncaptioned = np.setdiff1d(np.arange(len(audio)), captioned)
    q = texts[uncaptioned]
    rec = recipe(AnchorShape(len(given[1]), "audio"), AUDIO, o)
    merged_rec = recipe(AnchorShape(len(given[1]) + len(captioned), "audio"), AUDIO, o)
    anchor_set = AnchorSet([f"g{i}" for i in range(len(given[1]))], [f"g {i}" for i in range(len(given[1]))],
                           modality="audio", vectors={"audio": given[1]})
    rows = [{"path": f"s{i}", "caption": captions[i]} for i in range(len(audio))]
    sa = self_anchored(anchor_set, given[1], given[0], Corpus(rows, audio, list(captioned), texts[captioned]), rec, o,
                       AUDIO)
    return {"given anchors alone": hits(rec, *given, q, audio, uncaptioned),
            "appended as they are": hits(merged_rec, np.vstack([given[0], texts[captioned]]),
                                         np.vstack([given[1], audio[captioned]]), q, audio, uncaptioned),
            "**self-anchoring**": hits(sa.rec, sa.a_txt, sa.a_med, q, audio, uncaptioned)}


def main() -> None:
    args, start = out_args(__doc__)
    snd = load_sounds(load_encoder(AUDIO, "audio"), load_encoder(DEFAULT_ENCODERS["text"], "text"), CAPTION, False)
    anchors, corpus, _ = concept_split(list(snd.names), 4, "sounds:")
    captions = [CAPTION.format(w) for w in snd.words[corpus]]
    data = {}
    for f in FRACTIONS:
        draws = [one_draw((snd.captions[anchors], snd.audio[anchors]), snd.captions[corpus], snd.audio[corpus],
                          captions, draw(len(corpus), f, seed)) for seed in range(DRAWS)]
        data[f"{f:.0%}"] = {k: float(np.concatenate([d[k] for d in draws]).mean()) for k in draws[0]}
    lines = ["# Self-anchoring on sounds", "", __doc__.split("\n\n")[0].replace("\n", " "), "",
             f"{len(anchors)} anchor sounds, {len(corpus)} in the corpus.", "",
             "| way | " + " | ".join(f"{f} captioned" for f in data) + " |", "|---|" + "---:|" * len(data)]
    lines += [f"| {w} | " + " | ".join(f"{data[f][w]:.3f}" for f in data) + " |" for w in next(iter(data.values()))]
    lines += ["", f"Test R@10, the queries of the {DRAWS} draws pooled. `.venv/bin/python scripts/self_anchor_sounds.py "
              f"--out results/experiments/self_anchors_sounds.md` ({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, data)


if __name__ == "__main__":
    main()
