"""``build --tune``: the recipe's k, p, centring and whitening chosen on the user's own pairs.

The defaults were chosen on this repository's suites, for its encoders; another image network or
another domain may want other settings. The user's anchors are pairs of their own domain and
encoders, so they can say: cut into concept-disjoint folds (retrieval/core/folds.py; rows whose
concept, or caption, is the same stay together), each fold's pairs are held out in turn and found
from the rest, text -> media and media -> text, with every candidate setting, scored as a build with
that setting would score them (the recipe's preparing steps, then top-k relative vectors and the
dense tie-break; tests/test_tuning.py checks they equal a build's scores). The cosines are computed
once per fold and preparation, so k and p cost a cut and a power each.

The default is the first candidate and is kept unless a candidate beats it by more than one standard
error of the paired per-query difference: choosing the best of a hundred settings on a few hundred
held-out pairs flatters the winner, and a setting that wins by less than the folds can tell should
not replace one measured on many suites. The folds' table goes into the manifest (``tuning``).

The background bank and the label bridge keep their defaults: tuning sees the anchors block alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from retrieval.build.options import DEFAULT_WHITEN
from retrieval.build.recipe import Recipe
from retrieval.core.folds import validation_folds
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.projector import projector_from_spec
from retrieval.core.relative import cosine_relative
from retrieval.errors import InputError
from retrieval.progress import progress

FOLDS = 4
MIN_HELD = 8                     # held-out concepts a fold needs at the least
KS = (16, 32, 64, 128, 256, 512)
PS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
BUDGET_S = 120.0
AT = 10                          # the recall depth the settings are chosen for, both directions
GUARD = 1.0                      # standard errors a candidate must beat the default by


@dataclasses.dataclass(frozen=True)
class Tuning:
    recipe: Recipe                # the recipe to build with (the default's when nothing beat it)
    table: List[Dict]             # one row per candidate tried: its settings and validation R@10
    record: Dict                  # what the manifest keeps


def concepts_of(captions: Sequence[str], concepts: Optional[Sequence] = None) -> List[str]:
    """Each row's concept: the anchor table's ``concept`` column, else its caption, case and spaces aside."""
    if concepts is not None:
        return [str(c) for c in concepts]
    return [" ".join(str(c).casefold().split()) for c in captions]


def needed_concepts() -> int:
    return FOLDS * MIN_HELD * 2  # the fold sizes vary with the hash: twice the bare minimum


def check_enough(concepts: Sequence[str]) -> None:
    n = len(set(concepts))
    if n < needed_concepts():
        raise InputError(f"expected at least {needed_concepts()} distinct anchor concepts for --tune's {FOLDS} "
                         f"validation folds, got {n}; build without --tune to use the defaults")


def check_tune(anchor_set, o) -> None:
    """--tune with what it cannot choose around is refused before anything is encoded (no --tune: nothing to check)."""
    if not o.tune:
        return
    given = [name for name, v in (("k", o.k), ("p", o.p), ("whiten", o.whiten)) if v is not None]
    if given:
        raise InputError(f"expected --tune to choose k, p, centring and whitening itself, got {', '.join(given)} "
                         f"given as well; drop them, or drop --tune")
    if anchor_set.has_views or o.kind != "asif" or o.n_anchors is not None:
        raise InputError("expected --tune with a single-view anchor set (no repeated 'concept'), the asif kind and "
                         "no --n-anchors budget; those are not tuned yet, build without --tune")
    check_enough(concepts_of(anchor_set.captions))


def tuned(rec: Recipe, anchor_set, media: np.ndarray, text: np.ndarray, o) -> Tuple[Recipe, Optional[Dict]]:
    """(the recipe to build with, the manifest's ``tuning`` record or None): what build and reanchor
    call once their anchors are encoded; without ``o.tune``, the recipe as it is."""
    if not o.tune:
        return rec, None
    got = tune(media, text, concepts_of(anchor_set.captions), rec, show_progress_bar=o.show_progress_bar)
    return got.recipe, got.record


def candidates(rec: Recipe, n_fit: int) -> List[Recipe]:
    """The default first, then every k (at most the fitted anchors) x p x preparation."""
    preps = [(False, 0.0), (True, 0.0), (True, rec.whiten or DEFAULT_WHITEN)]
    out, seen = [rec], {(rec.k, rec.p, rec.center or bool(rec.whiten), rec.whiten)}
    for (center, whiten), k, p in itertools.product(preps, sorted({min(k, n_fit) for k in KS}), PS):
        key = (k, p, center, whiten)
        if key not in seen:
            seen.add(key)
            out.append(dataclasses.replace(rec, k=k, p=p, center=center, whiten=whiten))
    return out


def tune(media: np.ndarray, text: np.ndarray, concepts: Sequence[str], rec: Recipe, *, budget_s: float = BUDGET_S,
         salt: str = "", show_progress_bar: Optional[bool] = None) -> Tuning:
    """Choose among :func:`candidates` on concept folds of the pairs (``media[i]``, ``text[i]``); the
    candidates not reached within ``budget_s`` seconds are left out (the record says so)."""
    check_enough(concepts)
    if rec.kind != "asif":
        raise InputError(f"expected --tune with the asif kind of relative vectors, got kind {rec.kind!r}")
    folds = [f for f in validation_folds(concepts, np.arange(len(concepts)), FOLDS, salt) if len(f[1]) >= 2]
    cands = candidates(rec, min(len(fit) for fit, _ in folds))
    prepared = Prepared(np.asarray(media, np.float32), np.asarray(text, np.float32), folds)
    start, hits = time.perf_counter(), []
    for r in progress(cands, total=len(cands), desc="tune: settings", show=show_progress_bar):
        if hits and time.perf_counter() - start > budget_s:
            break
        hits.append(np.concatenate([fold_hits(r, prepared, f) for f in range(len(folds))]))
    return choose(cands[:len(hits)], hits, len(cands), time.perf_counter() - start, len(set(concepts)))


class Prepared:
    """Each fold's held-out rows ranked against its anchors, as a chain's steps before its relativiser
    prepare both, kept for the candidates that share those steps: k and p only cut and bend these
    rankings, so the whitening is fitted and the cosines computed once per fold and preparation."""

    def __init__(self, media: np.ndarray, text: np.ndarray, folds):
        self.sides, self.folds, self.key, self.cache = {"media": media, "text": text}, folds, None, {}

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


def fold_hits(r: Recipe, prepared: Prepared, f: int) -> np.ndarray:
    """Per held-out pair of fold ``f``: R@10 of its text finding its media, then of its media finding
    its text, scored as a build with recipe ``r`` scores (top-k relative vectors, dense tie-break)."""
    text, media = (relative(*prepared.ranked(r, side, f), r.k, r.p) for side in ("text", "media"))
    prim = (text @ media.T).toarray()
    scores, truth = lexicographic(prim, prepared.secondary(r, f)), np.arange(len(prim))
    at = depth(len(prim), len(prim) + prepared.n_fit(f))
    return np.concatenate([query_recall(scores, truth, at), query_recall(scores.T, truth, at)])


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


def choose(cands: List[Recipe], hits: List[np.ndarray], n_cands: int, seconds: float, n_concepts: int) -> Tuning:
    """The best candidate if it beats the default (``cands[0]``) by more than one standard error."""
    means = [float(h.mean()) for h in hits]
    best = int(np.argmax(means))
    diff = hits[best] - hits[0]
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    chosen = best if means[best] - means[0] > GUARD * se else 0
    table = [{"k": r.k, "p": r.p, "center": r.center or bool(r.whiten), "whiten": r.whiten, "score": round(m, 4)}
             for r, m in zip(cands, means)]
    order = sorted(range(len(table)), key=lambda i: -means[i])
    record = {"folds": FOLDS, "concepts": n_concepts,
              "metric": f"R@{AT} (scaled to the fold's share of the pairs), text->media and media->text, held-out pairs",
              "candidates": n_cands, "tried": len(cands), "seconds": round(seconds, 1),
              "default": table[0], "best": table[best], "chosen": table[chosen], "standard_error": round(se, 4),
              "top": [table[i] for i in order[:10]]}
    return Tuning(cands[chosen], table, record)
