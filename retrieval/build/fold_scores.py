"""Held-out pairs scored on concept folds of the user's anchors, as a build would score them.

``build --tune`` (retrieval/build/tuning.py) asks three questions of the same folds: which recipe
(k, p, centring, whitening), how much of the background bank, and which route per direction. Each
is answered by scoring every fold's held-out pairs against a collection made of the fold's other
pairs: text -> media and media -> text, at a recall depth scaled to the fold's share of the pairs.
:class:`Prepared` keeps what the questions share (the prepared anchors, the cosines, the bank's
relative vectors), so a candidate costs a cut and a power, not a fit.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp

from retrieval.build.recipe import Recipe
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import projector_from_spec
from retrieval.core.relative import cosine_relative

AT = 10  # the recall depth the settings are chosen for, both directions


class Prepared:
    """Each fold's held-out rows ranked against its anchors, as a chain's steps before its relativiser
    prepare both, kept for the candidates that share those steps: k and p only cut and bend these
    rankings, so the whitening is fitted and the cosines computed once per fold and preparation.
    ``bank``: the background bank's (media, text) vectors, the second block a build relativises against;
    ``labels``: the media rows' label vectors (the label bridge's points in text space), or None."""

    def __init__(self, media: np.ndarray, text: np.ndarray, folds,
                 bank: Optional[Tuple[np.ndarray, np.ndarray]] = None, labels: Optional[np.ndarray] = None):
        self.sides, self.folds, self.key, self.cache = {"media": media, "text": text}, folds, None, {}
        self.bank = None if bank is None else {"media": bank[0], "text": bank[1]}
        self.labels = labels
        self.last = (None, {})  # one setting's block scores per fold (blocks)

    def n_fit(self, f: int) -> int:
        return len(self.folds[f][0])

    def prepared(self, r: Recipe, side: str, f: int):
        """(prepared anchors, prepared held-out rows) of one side of fold ``f``."""
        key = preparation(r)
        if key != self.key:  # candidates come grouped by preparation: keep one group's at a time
            self.key, self.cache = key, {}
        if (side, f) not in self.cache:
            fit, held = self.folds[f]
            x = self.sides[side]
            chain = projector_from_spec(r.chain(style=False, k=1), style=None).fit(x[fit])
            self.cache[side, f] = (chain.relativiser.anchors_, chain.prepare(x[held]))
        return self.cache[side, f]

    def ranked(self, r: Recipe, side: str, f: int):
        """(each held-out row's anchors by falling cosine, those cosines)."""
        anchors, x = self.prepared(r, side, f)
        if ("ranked", side, f) not in self.cache:
            sims = x @ anchors.T
            order = np.argsort(-sims, axis=1, kind="stable")
            self.cache["ranked", side, f] = (order, np.take_along_axis(sims, order, axis=1))
        return self.cache["ranked", side, f]

    def secondary(self, r: Recipe, f: int) -> np.ndarray:
        """The dense tie-break of fold ``f``'s held-out texts against its media (the same for every k and p)."""
        if ("secondary", f) not in self.cache:
            (ta, tx), (ma, mx) = self.prepared(r, "text", f), self.prepared(r, "media", f)
            self.cache["secondary", f] = cosine_relative(tx, ta) @ cosine_relative(mx, ma).T
        return self.cache["secondary", f]

    def bank_ranked(self, r: Recipe, side: str, f: int):
        """(each held-out row's bank anchors by falling cosine, those cosines): the bank's chain with
        ``r``'s preparation, fitted on the bank, as a build's second block (kept per preparation)."""
        self.prepared(r, side, f)  # keeps the cache to r's preparation group
        if ("bank", side, f) not in self.cache:
            chain = projector_from_spec(r.chain(style=False, k=1), style=None).fit(self.bank[side])
            x = chain.prepare(self.sides[side][self.folds[f][1]])
            sims = x @ chain.relativiser.anchors_.T
            order = np.argsort(-sims, axis=1, kind="stable")
            self.cache["bank", side, f] = (order, np.take_along_axis(sims, order, axis=1))
        return self.cache["bank", side, f]

    def bank_scores(self, r: Recipe, f: int) -> Optional[np.ndarray]:
        """The bank block's scores of fold ``f``'s held-out texts against its media (None without a
        bank), with ``r``'s p and the bank block's k (``r.bank_k``, capped at the bank)."""
        if self.bank is None:
            return None
        k = min(len(self.bank["media"]), r.bank_k)
        text, media = (relative(*self.bank_ranked(r, side, f), k, r.p) for side in ("text", "media"))
        return (text @ media.T).toarray()

    def blocks(self, r: Recipe, f: int, bank: bool):
        """(the anchors block's scores, the bank block's or None) of fold ``f``'s held-out texts against
        its media with ``r``'s k and p. The last setting's are kept: the weights and routes tried after
        the grid score one setting many times, with only the blocks' weights changing."""
        key = (preparation(r), r.k, r.p, r.bank_k, bank)
        if self.last[0] != key:
            self.last = (key, {})
        parts = self.last[1]
        if f not in parts:
            text, media = (relative(*self.ranked(r, side, f), r.k, r.p) for side in ("text", "media"))
            parts[f] = ((text @ media.T).toarray(), self.bank_scores(r, f) if bank else None)
        return parts[f]

    def label_scores(self, f: int) -> np.ndarray:
        """The label bridge's cosines of fold ``f``'s held-out texts with its media's label vectors."""
        held = self.folds[f][1]
        text = l2_normalise(self.sides["text"][held], dtype=np.float64)  # queries are unit rows, as search makes them
        return text @ self.labels[held].astype(np.float64).T


def preparation(r: Recipe):
    """What the steps before the relativiser depend on: candidates that share it share the caches."""
    return r.center or bool(r.whiten), r.whiten


def relative_scores(r: Recipe, prepared: Prepared, f: int, bank_weight: Optional[float] = None,
                    label_weight: Optional[float] = None) -> np.ndarray:
    """Fold ``f``'s held-out texts (rows) against its media (columns), ordered as a build with recipe
    ``r`` orders them: the anchors' top-k relative vectors, plus the bank's block at ``bank_weight``
    (None: without the bank), plus the label bridge at ``label_weight`` (the relative+labels route;
    None: without it), then the dense tie-break."""
    prim, bank = prepared.blocks(r, f, bool(bank_weight) and prepared.bank is not None)
    if bank is not None:
        prim = prim + bank_weight * bank
    if label_weight and prepared.labels is not None:
        prim = prim + label_weight * prepared.label_scores(f)
    return lexicographic(prim, prepared.secondary(r, f))


def hits(scores: np.ndarray, at: int) -> np.ndarray:
    """Per held-out pair: R@``at`` of its text finding its media, then of its media finding its text."""
    truth = np.arange(len(scores))
    return np.concatenate([query_recall(scores, truth, at), query_recall(scores.T, truth, at)])


def fold_hits(r: Recipe, prepared: Prepared, f: int, bank_weight: Optional[float] = None,
              label_weight: Optional[float] = None) -> np.ndarray:
    """Per held-out pair of fold ``f``: R@10 of its text finding its media, then of its media finding
    its text, scored as a build with recipe ``r`` scores (top-k relative vectors, dense tie-break).
    With ``label_weight``, its texts finding their media only (the label bridge serves text queries)."""
    scores = relative_scores(r, prepared, f, bank_weight, label_weight)
    at = depth(len(scores), len(scores) + prepared.n_fit(f))
    if label_weight is not None:
        return query_recall(scores, np.arange(len(scores)), at)
    return hits(scores, at)


def relative(order: np.ndarray, sims: np.ndarray, k: int, p: float) -> sp.csr_matrix:
    """ASIF relative vectors from each row's anchors ranked by cosine (``order``, ``sims``): the
    top ``k`` (capped at the anchors, as a build caps it), negatives clamped to 0, to the power ``p``,
    unit rows; what retrieval/core/relativisers.py's AsifTopK gives for the same rows."""
    k = min(k, order.shape[1])
    vals = np.maximum(sims[:, :k], 0.0) ** p
    vals /= np.maximum(np.linalg.norm(vals, axis=1, keepdims=True), 1e-12)
    n = order.shape[0]
    return sp.csr_matrix((vals.ravel(), order[:, :k].ravel(), np.arange(0, n * k + 1, k)), shape=(n, order.shape[1]))


def depth(n_held: int, n_pairs: int) -> int:
    """The recall depth among ``n_held`` held-out pairs that stands for R@AT among ``n_pairs`` items:
    a fold's pairs are found among a quarter of the set, where R@10 would be four times easier."""
    return max(1, int(np.ceil(AT * n_held / n_pairs)))


LEVEL = 0.05  # the chance, over all the candidates tried, that noise alone replaces a default


def margin(n_alternatives: int) -> float:
    """Standard errors a candidate must beat the default by when it is the best of ``n_alternatives``:
    a one-sided test at LEVEL, Bonferroni-corrected over them. The best of many noisy candidates
    beats the default by a standard error or two by chance alone; with one standard error, --tune
    replaced defaults that then lost on held-out queries (results/experiments/tune)."""
    from scipy.stats import norm

    return float(norm.ppf(1.0 - LEVEL / max(1, n_alternatives)))


def beats(best: np.ndarray, default: np.ndarray, n_alternatives: int) -> Tuple[bool, float]:
    """(whether per-query scores ``best`` beat ``default`` by more than :func:`margin` standard errors
    of their paired difference, that standard error)."""
    se, gain = paired_se(default, best), float(np.mean(best) - np.mean(default))
    return gain > margin(n_alternatives) * se and gain > 0, se


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """The standard error of the mean of ``b - a`` (one entry per query, the same queries)."""
    diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
