"""Anchors of another domain than the corpus (``retrieval eval --suite crossdomain``).

A user without pairs of their own domain builds on a general set. Here every picture source
(:mod:`retrieval.datasets.pictures`) is a corpus, no item captioned, its captions the test queries
(one each, its own picture the target), and the anchors come from elsewhere: the engine's emoji pairs
(no background bank, as a build on them has none), or every other picture source with the build's
default emoji bank beside it. The corpus's own other half (the captions suite's concept split) is the
single-domain reference: the corpus is then the query half. Rows, each scored as a build scores it:

* chance (10 / items);
* plain ASIF on the given anchors (k=64, p=8, no centring, no bank, no label bridge): the baseline;
* the default build (the recipe's chains, the bank where a build adds one, the label bridge at its weight);
* ``--anchor-rarity 1``: the same with the items' anchors weighed by their rarity in the corpus
  (retrieval/build/rarity.py; left out below its minimum of items, as a build leaves it out).

Nothing is chosen here; the ideas tried and not kept are in results/experiments/cross_domain.md.
"""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

from retrieval.build import rarity
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, Recipe, recipe
from retrieval.core.folds import concept_split
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.projector import fit_projector
from retrieval.evaluation.harness import Suite
from retrieval.evaluation.suites import captions as C

RARITY = 1.0
ROWS = ("plain ASIF (baseline)", "default build", f"--anchor-rarity {RARITY:g}")


def build_scores(rec: Recipe, given: C.Anchors, q, g, labels, *, bank: bool = True) -> np.ndarray:
    """Queries x gallery as a build with ``rec`` scores them, its rarity weights learnt from ``g``."""
    bank = given.bank if bank else None
    specs = rec.specs("image", n_bank=0 if bank is None else len(bank[1]))
    sides = {"image": (given.med, None if bank is None else bank[1]), "text": (given.txt, None if bank is None else bank[0])}

    def fit(spec, m="image"):
        return fit_projector(spec, sides[m][0], bank=sides[m][1])

    specs, pm, g_rel, _ = rarity.relativised_items(specs, "image", fit, g, rec.rarity)
    pt = fit(specs["text"], "text")
    primary = (pt.transform(q) @ g_rel.T).toarray()
    if rec.label_weight:
        primary = primary + rec.label_weight * labels(q)
    return lexicographic(primary, pt.dense(q) @ pm.dense(g).T)


def regime(given: C.Anchors, q, g, labels) -> Dict[str, np.ndarray]:
    """Per query (row i's target is item i), R@10 of every row."""
    shape, target = AnchorShape(len(given.med), "image"), np.arange(len(g))
    out = {ROWS[0]: query_recall(build_scores(C.PLAIN, given, q, g, labels, bank=False), target, 10)}  # no labels
    for name, o in zip(ROWS[1:], (BuildOptions(), BuildOptions(anchor_rarity=RARITY))):
        out[name] = query_recall(build_scores(recipe(shape, None, o), given, q, g, labels), target, 10)
    return out


def regimes(data, emoji, classes) -> Iterator[Tuple[str, str, C.Anchors, np.ndarray, np.ndarray, object]]:
    """(corpus, regime, given anchors, queries, gallery, labels(q) -> queries x gallery) of the protocol."""
    from retrieval.evaluation.suites.pictures import image_logits, label_bridge

    for name, d in data.items():
        logits = image_logits(d.paths, name)

        def labels_of(rows, lg=logits):
            return lambda q: label_bridge(lg[rows], classes, q)

        everything = np.arange(len(d.images))
        yield name, "emoji anchors", C.Anchors("emoji", *emoji), d.texts, d.images, labels_of(everything)
        for other in data:
            if other != name:
                yield (name, f"{other} anchors + emoji bank", C.Anchors(other, data[other].texts, data[other].images,
                                                                       emoji), d.texts, d.images, labels_of(everything))
        half, rest, _ = concept_split(d.names, 4, name + ":")
        yield (name, "its other half + emoji bank (own domain)", C.Anchors(f"{name} half", d.texts[half],
                                                                             d.images[half], emoji),
               d.texts[rest], d.images[rest], labels_of(rest))


def run(report, ctx) -> Dict:
    data, emoji, classes, missing = C.load(ctx)
    report.text(__doc__.split("\n", 2)[2].split("\nNothing")[0] + "\n\nImage encoder `" + ctx.image.name
                + "`, text `" + ctx.text.name + "`.")
    summary, table = {}, []
    for corpus, name, given, q, g, labels in regimes(data, emoji, classes):
        hits = regime(given, q, g, labels)
        base, rare = hits[ROWS[1]], hits[ROWS[2]]
        summary[f"{corpus}: {name}"] = {"items": len(g), "anchors": len(given.med), "chance": 10 / len(g),
                                        **{r: round(float(h.mean()), 4) for r, h in hits.items()},
                                        "default vs plain": paired_interval(hits[ROWS[0]], base),
                                        "rarity vs default": paired_interval(base, rare),
                                        "rarity applied": len(g) >= rarity.MIN_ITEMS}
        s = summary[f"{corpus}: {name}"]
        table.append([f"{corpus} ({len(g)})", f"{name} ({len(given.med)})", round(10 / len(g), 3),
                      *[s[r] for r in ROWS], interval_words(s["default vs plain"]),
                      interval_words(s["rarity vs default"]) if s["rarity applied"] else "left out (too few items)"])
    report.table("Test R@10, anchors of another domain (and the corpus's own, for reference)",
                 ["corpus (items)", "anchors (pairs)", "chance", *ROWS, "default - plain (95 %)",
                  "rarity - default (95 %)"], table,
                 note="Each item found by its own caption among all the corpus's items; paired 95 % bootstrap "
                      "intervals over the queries.")
    if missing:
        report.text("Not measured in this run (install the Debian package named): " + "; ".join(missing))
    report.data("summary.json", summary)
    return summary


def interval_words(iv: Dict) -> str:
    return f"{iv['gain']:+.3f} ({iv['low']:+.3f} … {iv['high']:+.3f})"


SUITE = Suite("crossdomain", "anchors of another domain than the corpus: every ordered pair of picture sources and "
                             "emoji anchors against each, beside the corpus's own half; plain ASIF, the default "
                             "build and anchor rarity", run)
