"""A corpus partly captioned: what its own captions are worth (``retrieval eval --suite captions``).

Each picture source (:mod:`retrieval.datasets.pictures`) is a corpus of which a random 5 %, 10 % or
30 % of items carry their caption (3 draws each, seeded). The queries are the *uncaptioned* items'
captions, the gallery every item of the corpus, so no query's own pair is ever an anchor. The anchors
come in three regimes: the engine's emoji pairs (another domain, what a user with no pairs has), the
pairs of another picture source with the build's default emoji bank beside them (another domain, a
user's own set), and the other half of the same source (the corpus's own domain: its concepts split
by a stable hash, the corpus is the query half). Every row is scored as ``retrieval build`` scores
it (the recipe's chains, the background bank where a build adds one, the label bridge at its weight):

* plain ASIF on the given anchors (k=64, p=8, no centring): the baseline;
* the given anchors alone (the default build with ``--no-self-anchors``);
* the hand merge: the captioned items appended to the anchor table as they are;
* self-anchoring: what a build does (retrieval/build/self_anchors.py, its own validation included);
* + caption match: a search of that build, whose text queries also promote the captioned items whose
  own caption matches (retrieval/core/caption_match.py). Its queries here describe uncaptioned items,
  so any promotion pushes the target down: this row measures what the hybrid costs them.

Beside R@10 of the uncaptioned items: the paired 95 % interval of self-anchoring against the given
anchors alone (queries of the three draws pooled), and R@1 of the captioned items found by their own
caption, without and with the caption match.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from retrieval.build.anchors import AnchorSet
from retrieval.build.background import DEFAULT_WEIGHT as BANK_WEIGHT
from retrieval.build.background import TEMPLATE
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, Recipe, recipe
from retrieval.build.self_anchors import Corpus, self_anchored
from retrieval.core.caption_match import CaptionMatch
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.projector import fit_projector
from retrieval.encoders.labels import DEFAULT_WEIGHT as LABEL_WEIGHT
from retrieval.evaluation.harness import Suite

FRACTIONS = (0.05, 0.10, 0.30)
DRAWS = 3
SOURCES = ("tuxpaint", "openclipart", "scratch")
PLAIN = Recipe(k=64, p=8.0, kind="asif", center=False, whiten=0.0, pivot_k=64, pivot_p=8.0, label_weight=0.0,
               background_weight=BANK_WEIGHT, bank_k=64)
ROWS = ("plain ASIF on the given anchors (baseline)", "given anchors alone (default, --no-self-anchors)",
        "hand merge (captioned items appended to the anchors)", "**self-anchoring** (the build's default)",
        "+ caption match (hybrid search, the default)")


class Anchors:
    """Given anchors as vectors (``txt``, ``med``), their background bank or None, and a name."""

    def __init__(self, name: str, txt: np.ndarray, med: np.ndarray, bank=None):
        self.name, self.txt, self.med, self.bank = name, txt, med, bank

    def anchor_set(self) -> AnchorSet:
        return AnchorSet([f"{self.name}#{i}" for i in range(len(self.med))], [f"{self.name} {i}" for i in
                                                                               range(len(self.med))],
                         source=self.name, vectors={"image": self.med})


def bank_set(bank) -> Optional[tuple]:
    """The bank as self_anchored takes it: (an AnchorSet of its rows, media vectors, text vectors)."""
    if bank is None:
        return None
    txt, med = bank
    return AnchorSet([f"bank#{i}" for i in range(len(med))], [f"bank {i}" for i in range(len(med))],
                     vectors={"image": med}), med, txt


def scores(rec: Recipe, txt, med, bank, q, g, labels) -> np.ndarray:
    """Queries x gallery as a build with ``rec`` scores them: relative route + label bridge, tie-broken."""
    spec = rec.spec(n_bank=0 if bank is None else len(bank[1]))
    pt = fit_projector(spec, txt, bank=None if bank is None else bank[0])
    pm = fit_projector(spec, med, bank=None if bank is None else bank[1])
    g_rel = pm.transform(g)
    return lexicographic((pt.transform(q) @ g_rel.T).toarray() + LABEL_WEIGHT * labels, pt.dense(q) @ pm.dense(g).T)


def promoted(scored: np.ndarray, match: CaptionMatch, q: np.ndarray, texts) -> np.ndarray:
    """``scored`` (queries x gallery) as a hybrid search orders it: promoted items above all, in order."""
    out = scored.copy()
    top = scored.max() + 1.0
    for r, m in enumerate(match.match(q, texts)):
        out[r, m.rows] = top + np.arange(len(m.rows), 0, -1)
    return out


def draw(n: int, fraction: float, seed: int) -> np.ndarray:
    return np.flatnonzero(np.random.default_rng(seed).random(n) < fraction)


def one_draw(given: Anchors, corpus, captioned: np.ndarray, labels_of) -> Dict[str, np.ndarray]:
    """Per uncaptioned item, R@10 of every row; and R@1 of the captioned items by their own caption."""
    texts, images, captions = corpus
    uncaptioned = np.setdiff1d(np.arange(len(images)), captioned)
    q, lab = texts[uncaptioned], labels_of(uncaptioned)
    rec = recipe(AnchorShape(len(given.med), "image"), None, BuildOptions())
    merged_rec = recipe(AnchorShape(len(given.med) + len(captioned), "image"), None, BuildOptions())
    hand = (np.vstack([given.txt, texts[captioned]]), np.vstack([given.med, images[captioned]]))
    has = set(captioned.tolist())
    rows = [{"path": f"item{i}", "caption": captions[i] if i in has else None} for i in range(len(images))]
    sa = self_anchored(given.anchor_set(), given.med, given.txt, Corpus(rows, images, captioned, texts[captioned]),
                       rec, BuildOptions(), None, bank_set(given.bank))
    out, captions_of = {}, (lambda rows: [captions[i] for i in rows])
    for label, (r, t, m) in zip(ROWS, ((PLAIN, given.txt, given.med), (rec, given.txt, given.med),
                                       (merged_rec, *hand), (sa.rec, sa.a_txt, sa.a_med))):
        bank = None if r is PLAIN else given.bank
        out[label] = query_recall(scores(r, t, m, bank, q, images, lab), uncaptioned, 10)
    match = CaptionMatch.fit(texts[captioned], captions_of(captioned), captioned)
    sa_scores = scores(sa.rec, sa.a_txt, sa.a_med, given.bank, q, images, lab)
    out[ROWS[4]] = query_recall(promoted(sa_scores, match, q, captions_of(uncaptioned)), uncaptioned, 10)
    own = scores(sa.rec, sa.a_txt, sa.a_med, given.bank, texts[captioned], images, labels_of(captioned))
    out["own caption R@1"] = query_recall(own, captioned, 1)
    hybrid = promoted(own, match, texts[captioned], captions_of(captioned))
    out["own caption R@1, hybrid"] = query_recall(hybrid, captioned, 1)
    out["kept"] = np.array([bool(sa.record and sa.record["kept"])])
    return out


def regime_rows(given: Anchors, corpus, labels_of) -> List[Dict]:
    """Every fraction's rows: mean R@10 over the draws, the interval, the own-caption R@1."""
    out = []
    for fraction in FRACTIONS:
        draws = [one_draw(given, corpus, draw(len(corpus[1]), fraction, seed), labels_of) for seed in range(DRAWS)]
        pooled = {k: np.concatenate([d[k] for d in draws]) for k in draws[0]}
        out.append({"fraction": fraction, "captioned": int(np.mean([len(corpus[1]) - len(d[ROWS[0]]) for d in draws])),
                    **{r: round(float(pooled[r].mean()), 4) for r in ROWS},
                    "gain": paired_interval(pooled[ROWS[1]], pooled[ROWS[3]]),
                    "own caption R@1": round(float(pooled["own caption R@1"].mean()), 4),
                    "own caption R@1, hybrid": round(float(pooled["own caption R@1, hybrid"].mean()), 4),
                    "kept": f"{int(pooled['kept'].sum())}/{DRAWS}"})
    return out


def regimes(name: str, data: Dict, emoji, classes):
    """(regime name, given Anchors, corpus (texts, images, captions), labels_of) for one source."""
    from retrieval.evaluation.suites.pictures import image_logits, label_bridge

    d = data[name]
    logits = image_logits(d.paths, name)

    def corpus_and_labels(rows):
        texts, images, lg = d.texts[rows], d.images[rows], logits[rows]
        return (texts, images, [d.captions[i] for i in rows]), lambda r: label_bridge(lg, classes, texts[r])

    everything = np.arange(len(d.names))
    yield ("emoji anchors (another domain)", Anchors("emoji", *emoji), *corpus_and_labels(everything))
    for other in data:
        if other != name:
            yield (f"{other} anchors + emoji bank (another domain)",
                   Anchors(other, data[other].texts, data[other].images, emoji), *corpus_and_labels(everything))
    half, rest, _ = concept_split(d.names, 4, name + ":")
    yield ("its other half as anchors + emoji bank (own domain)",
           Anchors(f"{name} half", d.texts[half], d.images[half], emoji), *corpus_and_labels(rest))


def load(ctx):
    """(picture sources by name, emoji (texts, images) as the engine captions them, ImageNet class
    vectors, the sources missing here and why)."""
    from retrieval.encoders.labels import class_vectors, imagenet_names
    from retrieval.errors import InputError
    from retrieval.evaluation.data import load_emoji, load_pictures

    data, missing = {}, []
    for name in SOURCES:
        try:
            data[name] = load_pictures(name, ctx.image, ctx.text, ctx.show_progress_bar)
        except InputError as exc:
            missing.append(f"{name}: {exc}")
    em = load_emoji(ctx.image, ctx.text, [TEMPLATE], ctx.show_progress_bar)
    return data, (em.texts[TEMPLATE], em.images["noto"]), class_vectors(ctx.text, imagenet_names()), missing


def default_data():
    """What :func:`load` gives with the default encoders, no progress bars (the experiment scripts' data);
    a source missing here is an error."""
    from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
    from retrieval.errors import InputError
    from retrieval.evaluation.harness import Context

    image, text = load_encoder(DEFAULT_ENCODERS["image"], "image"), load_encoder(DEFAULT_ENCODERS["text"], "text")
    data, emoji, classes, missing = load(Context(image, text, None, {}, False))
    if missing:
        raise InputError("expected every picture source installed, missing: " + "; ".join(missing))
    return data, emoji, classes


def run(report, ctx) -> Dict:
    data, emoji, classes, missing = load(ctx)
    report.text(__doc__.split("\n", 2)[2].split("\nBeside")[0] + "\n\nImage encoder `" + ctx.image.name
                + "`, text `" + ctx.text.name + "`.")
    summary = {}
    for name in data:
        for regime, given, corpus, labels_of in regimes(name, data, emoji, classes):
            rows = regime_rows(given, corpus, labels_of)
            summary[f"{name}: {regime}"] = rows
            report.table(f"{name} ({len(corpus[1])} items): {regime}, {len(given.med)} given pairs",
                         ["captioned", *[r.replace("**", "") if r != ROWS[3] else r for r in ROWS],
                          "gain over alone (95 % interval)", "own caption R@1", "… hybrid", "kept"],
                         [[f"{r['fraction']:.0%} (~{r['captioned']})", *[r[x] for x in ROWS],
                           f"{r['gain']['gain']:+.3f} ({r['gain']['low']:+.3f} … {r['gain']['high']:+.3f})",
                           r["own caption R@1"], r["own caption R@1, hybrid"], r["kept"]] for r in rows],
                         note=f"Test R@10 of the uncaptioned items' captions, mean of {DRAWS} draws. 'kept': in how "
                              f"many draws the build's validation kept self-anchoring.")
    if missing:
        report.text("Not measured in this run (install the Debian package named): " + "; ".join(missing))
    report.data("summary.json", summary)
    return summary


SUITE = Suite("captions", "a corpus partly captioned (5/10/30 %): its captions as anchors (self-anchoring) against "
              "the given anchors alone and the hand merge, with anchors of another domain and of its own", run)
