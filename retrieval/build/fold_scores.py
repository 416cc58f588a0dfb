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
from retrieval.core.projector import fit_projector, projector_from_spec
from retrieval.core.relative import cosine_relative

AT = 10  # the recall depth the settings are chosen for, both directions


class Prepared:
    """Each fold's held-out rows ranked against its anchors, as a chain's steps before its relativiser
    prepare both, kept for the candidates that share those steps: k and p only cut and bend these
    rankings, so the whitening is fitted and the cosines computed once per fold and preparation.
    ``bank``: the background bank's (media, text) vectors, the second block a build relativises against."""

    def __init__(self, media: np.ndarray, text: np.ndarray, folds,
                 bank: Optional[Tuple[np.ndarray, np.ndarray]] = None):
        self.sides, self.folds, self.key, self.cache = {"media": media, "text": text}, folds, None, {}
        self.bank = None if bank is None else {"media": bank[0], "text": bank[1]}
        self.bank_cache = {}

    def n_fit(self, f: int) -> int:
        return len(self.folds[f][0])

    def prepared(self, r: Recipe, side: str, f: int):
        """(prepared anchors, prepared held-out rows) of one side of fold ``f``."""
        key = (r.center or bool(r.whiten), r.whiten)
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

    def bank_scores(self, r: Recipe, f: int) -> Optional[np.ndarray]:
        """The bank block's scores of fold ``f``'s held-out texts against its media (None without a
        bank): the bank's chain with ``r``'s settings, fitted on the bank, as a build's second block."""
        if self.bank is None:
            return None
        key = (r.k, r.p, r.center, r.whiten, r.bank_k, f)
        if key not in self.bank_cache:
            held = self.folds[f][1]
            n = len(self.bank["media"])
            spec = r.chain(style=False, k=min(n, r.bank_k))
            text, media = (fit_projector(spec, self.bank[s]).transform(self.sides[s][held]) for s in ("text", "media"))
            self.bank_cache[key] = (text @ media.T).toarray().astype(np.float64)
        return self.bank_cache[key]


def relative_scores(r: Recipe, prepared: Prepared, f: int, bank_weight: Optional[float] = None) -> np.ndarray:
    """Fold ``f``'s held-out texts (rows) against its media (columns), ordered as a build with recipe
    ``r`` orders them: the anchors' top-k relative vectors, plus the bank's block at ``bank_weight``
    (None: without the bank), then the dense tie-break."""
    text, media = (relative(*prepared.ranked(r, side, f), r.k, r.p) for side in ("text", "media"))
    prim = (text @ media.T).toarray()
    bank = prepared.bank_scores(r, f) if bank_weight else None
    if bank is not None:
        prim = prim + bank_weight * bank
    return lexicographic(prim, prepared.secondary(r, f))


def hits(scores: np.ndarray, at: int) -> np.ndarray:
    """Per held-out pair: R@``at`` of its text finding its media, then of its media finding its text."""
    truth = np.arange(len(scores))
    return np.concatenate([query_recall(scores, truth, at), query_recall(scores.T, truth, at)])


def fold_hits(r: Recipe, prepared: Prepared, f: int, bank_weight: Optional[float] = None) -> np.ndarray:
    """Per held-out pair of fold ``f``: R@10 of its text finding its media, then of its media finding
    its text, scored as a build with recipe ``r`` scores (top-k relative vectors, dense tie-break)."""
    scores = relative_scores(r, prepared, f, bank_weight)
    return hits(scores, depth(len(scores), len(scores) + prepared.n_fit(f)))


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


def paired_se(a: np.ndarray, b: np.ndarray) -> float:
    """The standard error of the mean of ``b - a`` (one entry per query, the same queries)."""
    diff = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
