"""Anchors of another domain than the corpus: what the unpaired corpus itself can add (issue 35).

The corpus's pictures are unpaired, but the user's image network sees them in their own domain, where
it is good; the anchors are what is out of domain. Ideas tried, each on the scores a build makes
(relative route + label bridge; the dense tie-break untouched), each on a small grid:

* anchor rarity as a build makes it (``--anchor-rarity POWER``, retrieval/build/rarity.py): the items'
  kept anchors weighed by their inverse document frequency among the corpus items, rows unit again,
  block by block (the anchors', the bank's); left out under 200 items, as a build leaves it out;
* the same weights with the items' whole vector (anchors and bank together) made unit again ("idf");
* the label bridge's weight times x;
* the background bank's weight (0.75, 3 or 6; the default 1.5), where the anchors have a bank;
* corpus-graph smoothing: each item's score mixed with the mean score of its ``m`` nearest corpus
  neighbours by the image network, ``s' = (1 - b) s + b mean_nn(s)``;
* query expansion in the image space: the top ``n`` items of a query vote for the items the image
  network finds like them, ``s' = s + g cos(item, their mean image)``, images centred on the corpus;
* NNN hubness correction, the reference bank the anchor captions: each item's score lowered by ``a``
  times its mean score against its 16 nearest bank captions;
* pseudo-pairs by mutual nearest neighbours: an anchor caption and the corpus item it finds first, when
  that item finds it first too, the most confident fraction ``f`` of them, fed as self-anchoring feeds
  captions (retrieval/build/self_anchors.py: the given anchors moved to the corpus's mean, the pairs
  appended); their text is the anchor's caption, never a corpus caption.

Protocol: the crossdomain suite's (retrieval/evaluation/suites/crossdomain.py): every ordered pair of
anchors and corpus, all the corpus's pictures as gallery, their captions as queries, and each corpus's
own other half as anchors. Test R@10 with the paired 95 % interval against the default build. The
"chosen" rows pick each idea's setting leave one corpus out: for each corpus, the setting with the best
mean gain over the default on the regimes of the other corpora, never on the queries it is tested on.

    .venv/bin/python scripts/cross_domain_probe.py --out results/experiments/cross_domain.md
"""

from __future__ import annotations

import time
from typing import Callable, Dict

import numpy as np

from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.build.self_anchors import corpus_mean, merged
from retrieval.core.metrics import lexicographic, paired_interval, query_recall
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import fit_projector
from retrieval.encoders.labels import DEFAULT_WEIGHT as LABEL_WEIGHT
from retrieval.evaluation.benchlib import out_args, report
from retrieval.evaluation.suites import captions as C
from retrieval.evaluation.suites import crossdomain as X

SMOOTH = [(m, b) for m in (5, 10, 20) for b in (0.25, 0.5, 0.75)]
EXPAND = [(n, g) for n in (3, 10) for g in (0.05, 0.1, 0.2)]
NNN = (0.25, 0.5, 1.0)
FAMILIES = ("smooth", "expand", "nnn", "idf", "label", "rarity", "pseudo", "bank")
BANK = (0.75, 3.0, 6.0)  # the default is background.DEFAULT_WEIGHT (1.5)
PSEUDO = (0.25, 0.5, 1.0)
RARITY = (0.5, 1.0, 2.0, 3.0, 4.0)


def parts(rec, given: C.Anchors, q, g, labels):
    """(primary, secondary, bank primary, (queries' and items' relative vectors, label scores)): the
    default build's scores before the tie-break, and the anchor captions' primary scores against the
    gallery (NNN's reference bank)."""
    bank = given.bank
    spec = rec.spec(n_bank=0 if bank is None else len(bank[1]))
    pt = fit_projector(spec, given.txt, bank=None if bank is None else bank[0])
    pm = fit_projector(spec, given.med, bank=None if bank is None else bank[1])
    g_rel, q_rel = pm.transform(g), pt.transform(q)
    prim = (q_rel @ g_rel.T).toarray() + LABEL_WEIGHT * labels(q)
    ref = (pt.transform(given.txt) @ g_rel.T).toarray() + LABEL_WEIGHT * labels(given.txt)
    return prim, pt.dense(q) @ pm.dense(g).T, ref, (q_rel, g_rel, labels(q))


def neighbours(images: np.ndarray, m: int) -> np.ndarray:
    """Each item's ``m`` nearest other items by the image network's cosine."""
    x = l2_normalise(np.asarray(images, np.float64), dtype=None)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :m]


def smoothed(prim, nn, b):
    return (1 - b) * prim + b * prim[:, nn].mean(2)


def expanded(prim, images, n, g):
    x = np.asarray(images, np.float64)
    x = l2_normalise(x - x.mean(0), dtype=None)
    top = np.argsort(-prim, axis=1)[:, :n]
    centre = l2_normalise(x[top].mean(1), dtype=None)
    return prim + g * centre @ x.T


def nnn(prim, ref, a, k=16):
    return prim - a * np.sort(ref, axis=0)[-min(k, len(ref)):].mean(0)[None, :]


def idf(rel, t, unit):
    """Relative scores with each anchor weighted by its rarity among the corpus items' top k."""
    q_rel, g_rel, lab = rel
    df = np.asarray((g_rel > 0).sum(0)).ravel()
    w = (np.log((g_rel.shape[0] + 1) / (df + 1)) + 1) ** t
    g = g_rel.multiply(w[None, :]).tocsr()
    if unit:
        g = g.multiply(1 / np.maximum(np.sqrt(np.asarray(g.multiply(g).sum(1))), 1e-12)).tocsr()
    return (q_rel @ g.T).toarray() + LABEL_WEIGHT * lab


def ideas(images) -> Dict[str, Callable]:
    """Every idea's setting, by row name: a function of (primary, bank primary, parts) -> primary."""
    out = {}
    for t in (0.5, 1.0, 2.0):
        for unit in (False, True):
            out[f"idf t={t}{' unit' if unit else ''}"] = lambda p, r, rel, t=t, u=unit: idf(rel, t, u)
    for x in (0.0, 2.0, 4.0):
        out[f"label x{x}"] = lambda p, r, rel, x=x: p + (x - 1) * LABEL_WEIGHT * rel[2]
    for m, b in SMOOTH:
        nn = neighbours(images, m)
        out[f"smooth m={m} b={b}"] = lambda p, r, rel, nn=nn, b=b: smoothed(p, nn, b)
    for n, g in EXPAND:
        out[f"expand n={n} g={g}"] = lambda p, r, rel, n=n, g=g: expanded(p, images, n, g)
    for a in NNN:
        out[f"nnn a={a}"] = lambda p, r, rel, a=a: nnn(p, r, a)
    return out


def mutual_pairs(rec, given: C.Anchors, images, labels) -> np.ndarray:
    """(caption row, item row) of each anchor caption and corpus item that find each other first, most
    confident first."""
    s = X.build_scores(rec, given, given.txt, images, labels)
    item, caption = s.argmax(1), s.argmax(0)
    mutual = np.flatnonzero(caption[item] == np.arange(len(s)))
    mutual = mutual[np.argsort(-s[mutual, item[mutual]], kind="stable")]
    return np.stack([mutual, item[mutual]], 1)


def pseudo_paired(given: C.Anchors, images, pairs, f) -> C.Anchors:
    chosen = pairs[:max(1, int(round(f * len(pairs))))]
    med, txt = merged(given.med, given.txt, images[chosen[:, 1]], given.txt[chosen[:, 0]], corpus_mean(images))
    return C.Anchors("pseudo", txt, med, given.bank)


def regime(given: C.Anchors, texts, images, labels) -> Dict[str, np.ndarray]:
    """Per query, R@10 of every row."""
    target, shape = np.arange(len(images)), AnchorShape(len(given.med), "image")
    suite = X.regime(given, texts, images, labels)
    rows = {"plain ASIF": suite[X.ROWS[0]], "default": suite[X.ROWS[1]]}
    for power in RARITY:
        rec = recipe(shape, None, BuildOptions(anchor_rarity=power))
        rows[f"rarity {power}"] = query_recall(X.build_scores(rec, given, texts, images, labels), target, 10)
    for w in BANK:  # the background bank's weight (emoji anchors have no bank: the default's scores)
        rec = recipe(shape, None, BuildOptions(background_weight=w))
        rows[f"bank weight {w}"] = query_recall(X.build_scores(rec, given, texts, images, labels), target, 10)
    pairs = mutual_pairs(recipe(shape, None, BuildOptions()), given, images, labels)
    for f in PSEUDO:
        moved = pseudo_paired(given, images, pairs, f)
        rec = recipe(AnchorShape(len(moved.med), "image"), None, BuildOptions())
        rows[f"pseudo f={f}"] = query_recall(X.build_scores(rec, moved, texts, images, labels), target, 10)
    prim, sec, ref, rel = parts(recipe(shape, None, BuildOptions()), given, texts, images, labels)
    for name, f in ideas(images).items():
        rows[name] = query_recall(lexicographic(f(prim, ref, rel), sec), target, 10)
    return rows


def chosen(results, corpus_of, family: str, test_corpus: str) -> str:
    """The setting of ``family`` with the best mean gain over the default on the other corpora's regimes."""
    names = [r for r in next(iter(results.values())) if r.startswith(family)]
    val = [c for c in results if corpus_of[c] != test_corpus]
    return max(names, key=lambda r: np.mean([results[c][r].mean() - results[c]["default"].mean() for c in val]))


def main() -> None:
    args, start = out_args(__doc__)
    data, emoji, classes = C.default_data()
    results, corpus_of, sizes = {}, {}, {}
    for corpus, regime_name, given, q, g, labels in X.regimes(data, emoji, classes):
        name = f"{regime_name} -> {corpus}"
        results[name], corpus_of[name], sizes[name] = regime(given, q, g, labels), corpus, len(g)
        print(f"{name}: default {results[name]['default'].mean():.3f}", flush=True)
    picks = {c: {f: chosen(results, corpus_of, f, corpus_of[c]) for f in FAMILIES} for c in results}
    for c, by_family in picks.items():
        for family, pick in by_family.items():
            results[c][f"{family}, chosen leave one corpus out"] = results[c][pick]
    cols = list(results)
    rows = list(results[cols[0]])
    lines = ["# Anchors of another domain: the unpaired corpus's own structure", "",
             *(p.replace("\n", " ") + "\n" for p in __doc__.split("\n\n")[1:3]),
             "| row | " + " | ".join(f"{c} ({sizes[c]})" for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in rows:
        cells = []
        for c in cols:
            iv = paired_interval(results[c]["default"], results[c][row])
            cells.append(f"{results[c][row].mean():.3f}" + ("" if row == "default" else
                                                              f" ({iv['gain']:+.3f}, {iv['low']:+.3f} … {iv['high']:+.3f})"))
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    chosen_text = "; ".join(f"{c}: " + ", ".join(picks[c].values()) for c in cols)
    lines += ["", f"Test R@10 of each corpus item by its caption; in brackets the paired gain over the default "
                  f"with its 95 % interval. Chosen settings: {chosen_text}. `.venv/bin/python scripts/cross_domain_probe.py "
                  f"--out results/experiments/cross_domain.md` ({time.time() - start:.0f} s, {time.strftime('%Y-%m-%d')})"]
    report(lines, args.out, {c: {"r10": {r: float(v.mean()) for r, v in results[c].items()}, "picks": picks[c]}
                             for c in cols})


if __name__ == "__main__":
    main()
