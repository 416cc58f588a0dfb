"""Scoring methods compared by the evaluation, built from the engine's own pieces.

Each function takes parallel anchors in the query space (``aq``) and the gallery space (``ag``),
queries ``q`` and gallery items ``g``, and returns a (queries x gallery) score matrix. The ASIF
scores order items exactly as the engine does: sparse ASIF similarity first, ties broken by the
dense relative cosine (``engine=True``), or the primary score alone with its raw ties.
"""

from __future__ import annotations

import numpy as np

from retrieval.core.metrics import lexicographic
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import RelativeProjector
from retrieval.core.ranking import ranks, rrf  # noqa: F401  (the fusion route's, for the suites)
from retrieval.core.selection import farthest_point, kmeans_select  # noqa: F401  (build --select's, for the suites)
from retrieval.core.translation import Translator


def asif(aq, ag, q, g, *, k=64, p=8.0, center=False, whiten=0.0, engine=True) -> np.ndarray:
    kw = dict(k=k, p=p, center=center, whiten=whiten)
    pq_, pg = RelativeProjector(**kw).fit(aq), RelativeProjector(**kw).fit(ag)
    primary = (pq_.transform(q) @ pg.transform(g).T).toarray()
    if not engine:
        return primary
    return lexicographic(primary, pq_.dense(q) @ pg.dense(g).T)


def cosine_relative(aq, ag, q, g, *, center=False) -> np.ndarray:
    pq_ = RelativeProjector(kind="cosine", center=center).fit(aq)
    pg = RelativeProjector(kind="cosine", center=center).fit(ag)
    return pq_.dense(q) @ pg.dense(g).T


def translate(aq, ag, q, g, *, method="orthogonal") -> np.ndarray:
    """Translate queries into the gallery space; cosine there, in the anchors' standard-scaled coordinates."""
    t = Translator(method).fit(aq, ag)
    return t.transform_scaled(q) @ t.scale_target(g).T


def csls(aq, ag, q, g, *, k=64, p=8.0, center=True, neighbours=10) -> np.ndarray:
    """ASIF with cross-domain similarity local scaling against hubs (Lample et al., 2018).

    A gallery item's hubness is its mean similarity to its ``neighbours`` nearest *anchor captions*
    (a fixed reference set, so the correction does not depend on the other queries).
    """
    pq_, pg = RelativeProjector(k=k, p=p, center=center).fit(aq), RelativeProjector(k=k, p=p, center=center).fit(ag)
    rq, rg, ra = pq_.transform(q), pg.transform(g), pq_.transform(aq)
    s = (rq @ rg.T).toarray()
    hub = np.sort((ra @ rg.T).toarray(), axis=0)[-neighbours:].mean(0)
    return lexicographic(2 * s - hub[None, :], pq_.dense(q) @ pg.dense(g).T)


SIMILARITIES = ("cosine", "euclidean", "l1", "linf")


def _similarities(x: np.ndarray, anchors: np.ndarray, sim: str) -> np.ndarray:
    """Row-standardised similarities of x to the anchors under one similarity function.

    Inputs are unit vectors centred on the anchor mean and *not* renormalised: on unit vectors the
    Euclidean distance would only re-express the cosine.
    """
    from scipy.spatial.distance import cdist

    if sim == "cosine":
        xn, an = l2_normalise(x, dtype=None), l2_normalise(anchors, dtype=None)
        s = xn @ an.T
    else:
        s = -cdist(x, anchors, {"euclidean": "euclidean", "l1": "cityblock", "linf": "chebyshev"}[sim])
    return (s - s.mean(1, keepdims=True)) / (s.std(1, keepdims=True) + 1e-12)


def _centred(a: np.ndarray, x: np.ndarray):
    a, x = l2_normalise(a, dtype=None), l2_normalise(x, dtype=None)
    mu = a.mean(0)
    return a - mu, x - mu


def product_of_invariances(aq, ag, q, g, *, sims=SIMILARITIES) -> np.ndarray:
    """Dense relative vectors under several similarity functions, concatenated, compared by cosine
    (the thesis's product of invariances, aggregated by concatenation)."""
    aq_c, q_c = _centred(aq, q)
    ag_c, g_c = _centred(ag, g)
    rq = np.hstack([_similarities(q_c, aq_c, s) for s in sims])
    rg = np.hstack([_similarities(g_c, ag_c, s) for s in sims])
    rq, rg = l2_normalise(rq, dtype=None), l2_normalise(rg, dtype=None)
    return rq @ rg.T


def asif_product_of_invariances(aq, ag, q, g, *, k=64, p=4.0, sims=SIMILARITIES) -> np.ndarray:
    """ASIF sparsification (top k, power p) of each similarity function's standardised relative
    vector; the scores of the different functions are summed."""
    from retrieval.core.relative import asif_topk

    aq_c, q_c = _centred(aq, q)
    ag_c, g_c = _centred(ag, g)
    total = 0.0
    for s in sims:
        total = total + (asif_topk(_similarities(q_c, aq_c, s), k, p)
                         @ asif_topk(_similarities(g_c, ag_c, s), k, p).T).toarray()
    return total


def _cca(x: np.ndarray, y: np.ndarray, reg: float):
    """Regularised CCA of paired rows: (x mean, y mean, x directions, y directions, correlations),
    directions as columns, correlations descending. ``reg`` is a ridge on each side's covariance,
    relative to its mean eigenvalue (the anchors are fewer than the dimensions)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x)

    def inv_sqrt(c):
        w, v = np.linalg.eigh(c)
        w = np.maximum(w, 0) + reg * max(w.mean(), 1e-12)
        return (v / np.sqrt(w)) @ v.T

    wx, wy = inv_sqrt(xc.T @ xc / n), inv_sqrt(yc.T @ yc / n)
    u, s, vt = np.linalg.svd(wx @ (xc.T @ yc / n) @ wy, full_matrices=False)
    return mx, my, wx @ u, wy @ vt.T, s


def csa(aq, ag, q, g, *, reg=1.0, dims=None, power=1.0) -> np.ndarray:
    """Canonical similarity (CSA, ICLR 2025): regularised CCA on the anchor pairs, then cosine in
    the canonical space with each direction weighted by its canonical correlation (to ``power``);
    ``dims`` keeps only the most correlated directions."""
    mx, my, a, b, rho = _cca(aq, ag, reg)
    r = len(rho) if dims is None else min(int(dims), len(rho))
    w = rho[:r] ** (power / 2.0)
    u = (np.asarray(q, np.float64) - mx) @ a[:, :r] * w
    v = (np.asarray(g, np.float64) - my) @ b[:, :r] * w
    u, v = l2_normalise(u, dtype=None), l2_normalise(v, dtype=None)
    return u @ v.T


def hubness_corrected(scores: np.ndarray, bank_scores: np.ndarray, *, alpha=0.75, k=16) -> np.ndarray:
    """Nearest-neighbour normalisation (NNN, 2024; the idea of QB-Norm, CVPR 2022): each gallery
    item's score is lowered by ``alpha`` x its mean score against its ``k`` nearest queries of a
    fixed reference bank (``bank_scores``: bank x gallery), so that hubs, items close to every
    query, stop crowding the top of every list. The bank is known at build time (the anchor
    captions), so the correction is one number per item."""
    k = min(int(k), len(bank_scores))
    bias = np.sort(bank_scores, axis=0)[-k:].mean(0)
    return scores - alpha * bias[None, :]


def asif_nnn(aq, ag, q, g, *, k=64, p=8.0, center=False, alpha=0.75, k_bank=16) -> np.ndarray:
    """The relative route with NNN hubness correction (:func:`hubness_corrected`), the reference bank
    being the anchors' own query side (e.g. the anchor captions for text -> audio); ``k`` is capped at
    the anchors."""
    kk = min(int(k), len(aq))
    pq_, pg = RelativeProjector(k=kk, p=p, center=center).fit(aq), RelativeProjector(k=kk, p=p, center=center).fit(ag)
    g_rel = pg.transform(g)
    prim, bank = (pq_.transform(q) @ g_rel.T).toarray(), (pq_.transform(aq) @ g_rel.T).toarray()
    return lexicographic(hubness_corrected(prim, bank, alpha=alpha, k=k_bank), pq_.dense(q) @ pg.dense(g).T)
