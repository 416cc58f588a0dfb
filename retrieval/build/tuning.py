"""``build --tune``: the recipe's k, p, centring and whitening chosen on the user's own pairs.

The defaults were chosen on this repository's suites, for its encoders; another image network or
another domain may want other settings. The user's anchors are pairs of their own domain and
encoders, so they can say: cut into concept-disjoint folds (retrieval/core/folds.py; rows whose
concept, or caption, is the same stay together), each fold's pairs are held out in turn and found
from the rest, text -> media and media -> text, with every candidate setting, scored as a build with
that setting would score them (the recipe's preparing steps, then top-k relative vectors and the
dense tie-break; tests/test_tuning.py checks they equal a build's scores). The cosines are computed
once per fold and preparation, so k and p cost a cut and a power each.

The default is the first candidate and is kept unless a candidate beats it by more than
fold_scores.margin standard errors of the paired per-query difference (a one-sided 5 % test,
Bonferroni-corrected over the candidates tried: about 3.3 for the grid): choosing the best of a
hundred settings on a few hundred held-out pairs flatters the winner, and a setting that wins by
less than the folds can tell should not replace one measured on many suites. The folds' table goes
into the manifest (``tuning``).

Then, with the chosen recipe, the same folds weigh the background bank (when the build has one: its
block's weight among BANK_WEIGHTS) and the label bridge (when it has one: its weight among
LABEL_WEIGHTS, on text queries only, with the anchor pictures' own label vectors), each with the same
guard against its default, and measure each direction's route (retrieval/build/tune_routes.py),
which the planner takes before its global priors. The recipe's grid is scored with the bank at its
default weight, as a build with each setting would score: without it, settings that suit the anchors
alone were chosen and lost on held-out queries once the bank was beside them
(results/experiments/tune).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# depth and relative: tuning's own names for the fold scoring it is tested through
from retrieval.build.fold_scores import AT, Prepared, beats, depth, fold_hits, margin, preparation, relative  # noqa: F401
from retrieval.build.options import DEFAULT_WHITEN
from retrieval.build.recipe import Recipe
from retrieval.build.tune_routes import measure_routes
from retrieval.core.folds import validation_folds
from retrieval.errors import InputError
from retrieval.progress import progress

FOLDS = 4
MIN_HELD = 8                     # held-out concepts a fold needs at the least
KS = (16, 32, 64, 128, 256, 512)
PS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
BUDGET_S = 120.0
BANK_WEIGHTS = (0.25, 0.75, 1.5, 3.0, 6.0)  # the bank block's weights tried (the default's first)
LABEL_WEIGHTS = (0.0, 0.15, 0.3, 0.6, 1.2, 2.4)  # the label bridge's weights tried (the default's first)


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
    given = [name for name, v in (("k", o.k), ("p", o.p), ("whiten", o.whiten),
                                  ("background_weight", o.background_weight), ("label_weight", o.label_weight))
             if v is not None]
    if given:
        raise InputError(f"expected --tune to choose k, p, centring, whitening and the bank's and the label bridge's "
                         f"weights itself, got "
                         f"{', '.join(given)} given as well; drop them, or drop --tune")
    if anchor_set.has_views or o.kind != "asif" or o.n_anchors is not None:
        raise InputError("expected --tune with a single-view anchor set (no repeated 'concept'), the asif kind and "
                         "no --n-anchors budget; those are not tuned yet, build without --tune")
    check_enough(concepts_of(anchor_set.captions))


def tuned(rec: Recipe, anchor_set, media: np.ndarray, text: np.ndarray, o, *, bank=None,
          labels: Optional[np.ndarray] = None) -> Tuple[Recipe, Optional[Dict]]:
    """(the recipe to build with, the manifest's ``tuning`` record or None): what build and reanchor
    call once their anchors are encoded; without ``o.tune``, the recipe as it is. ``bank``: the
    build's (bank, media vectors, text vectors) or None; ``labels``: the anchors' label vectors
    where the build makes a label bridge (builder.anchor_labels), else None."""
    if not o.tune:
        return rec, None
    got = tune(media, text, concepts_of(anchor_set.captions), rec, bank=None if bank is None else bank[1:],
               modality=anchor_set.modality, labels=labels, show_progress_bar=o.show_progress_bar)
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


def tune(media: np.ndarray, text: np.ndarray, concepts: Sequence[str], rec: Recipe, *,
         bank: Optional[Tuple[np.ndarray, np.ndarray]] = None, modality: str = "image",
         labels: Optional[np.ndarray] = None,
         budget_s: float = BUDGET_S, salt: str = "", show_progress_bar: Optional[bool] = None) -> Tuning:
    """Choose among :func:`candidates` on concept folds of the pairs (``media[i]``, ``text[i]``); the
    candidates not reached within ``budget_s`` seconds, less the time the later steps will take
    (estimated from the grid's own pace), are left out (the record says so). Then the
    bank's weight (``bank``: its media and text vectors), the label bridge's (``labels``: the media rows'
    label vectors) and each direction's route, on the same folds."""
    check_enough(concepts)
    if rec.kind != "asif":
        raise InputError(f"expected --tune with the asif kind of relative vectors, got kind {rec.kind!r}")
    folds = [f for f in validation_folds(concepts, np.arange(len(concepts)), FOLDS, salt) if len(f[1]) >= 2]
    cands = candidates(rec, min(len(fit) for fit, _ in folds))
    prepared = Prepared(np.asarray(media, np.float32), np.asarray(text, np.float32), folds, bank, labels)
    # the weights after the grid cost about a grid setting each, the routes (translators fitted) about eight:
    # the budget keeps room for them
    later = (len(BANK_WEIGHTS) if bank is not None else 0) + (len(LABEL_WEIGHTS) if labels is not None else 0) + 8
    start, hits, took = time.perf_counter(), [], {"fill": [0.0], "cut": [0.0]}
    for r in progress(cands, total=len(cands), desc="tune: settings", show=show_progress_bar):
        # what is left after the grid: one fill of the chosen preparation's caches, then a cut a step
        left = max(took["fill"]) + later * float(np.median(took["cut"]))
        if hits and time.perf_counter() - start + left > budget_s:
            break
        t0, fills = time.perf_counter(), preparation(r) != prepared.key
        hits.append(np.concatenate([fold_hits(r, prepared, f, r.background_weight if bank is not None else None)
                                    for f in range(len(folds))]))
        took["fill" if fills else "cut"].append(time.perf_counter() - t0)
    got = choose(cands[:len(hits)], hits, len(cands), time.perf_counter() - start, len(set(concepts)))
    chosen, record = got.recipe, dict(got.record)
    if bank is not None:
        chosen, record["bank"] = weigh(chosen, prepared, "background_weight", BANK_WEIGHTS,
                                       lambda r, f: fold_hits(r, prepared, f, r.background_weight))
    bank_weight = chosen.background_weight if bank is not None else None
    if labels is not None:
        chosen, record["labels"] = weigh(chosen, prepared, "label_weight", LABEL_WEIGHTS,
                                         lambda r, f: fold_hits(r, prepared, f, bank_weight, r.label_weight))
    record["routes"] = measure_routes(chosen, prepared, bank_weight, modality)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return Tuning(chosen, got.table, record)


def weigh(r: Recipe, prepared: Prepared, field: str, options, hits_of) -> Tuple[Recipe, Dict]:
    """(``r`` with its weight ``field`` chosen among ``options``, the record): ``hits_of(recipe, fold)``
    scores one; the default (``r``'s) is kept unless a weight beats it by the margin, as for the recipe."""
    default = getattr(r, field)
    cands = [dataclasses.replace(r, **{field: w}) for w in [default] + [w for w in options if w != default]]
    hits = [np.concatenate([hits_of(c, f) for f in range(len(prepared.folds))]) for c in cands]
    means = [float(h.mean()) for h in hits]
    best = int(np.argmax(means))
    won, se = beats(hits[best], hits[0], len(cands) - 1)
    chosen = best if won else 0
    return cands[chosen], {"weights": [{"weight": getattr(c, field), "score": round(m, 4)} for c, m in zip(cands, means)],
                           "default": default, "chosen": getattr(cands[chosen], field), "standard_error": round(se, 4),
                           "margin": round(margin(len(cands) - 1), 2)}


def choose(cands: List[Recipe], hits: List[np.ndarray], n_cands: int, seconds: float, n_concepts: int) -> Tuning:
    """The best candidate if it beats the default (``cands[0]``) by more than the margin for them all."""
    means = [float(h.mean()) for h in hits]
    best = int(np.argmax(means))
    won, se = beats(hits[best], hits[0], len(cands) - 1)
    chosen = best if won else 0
    table = [{"k": r.k, "p": r.p, "center": r.center or bool(r.whiten), "whiten": r.whiten, "score": round(m, 4)}
             for r, m in zip(cands, means)]
    order = sorted(range(len(table)), key=lambda i: -means[i])
    record = {"folds": FOLDS, "concepts": n_concepts,
              "metric": f"R@{AT} (scaled to the fold's share of the pairs), text->media and media->text, held-out pairs",
              "candidates": n_cands, "tried": len(cands), "seconds": round(seconds, 1),
              "default": table[0], "best": table[best], "chosen": table[chosen], "standard_error": round(se, 4),
              "margin": round(margin(len(cands) - 1), 2),
              "top": [table[i] for i in order[:10]]}
    return Tuning(cands[chosen], table, record)
