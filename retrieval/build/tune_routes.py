"""``build --tune``'s route per direction: relative, translation or fusion, measured on the user's pairs.

The planner's quality priors (retrieval/planning/planner.py) were measured on this repository's
suites; which route serves a collection best depends on its encoders and its pairs (translation
needs the two spaces to be nearly a rotation apart, fusion needs both routes to be decent). The
same concept folds that chose the recipe answer it: each fold's held-out pairs are found text ->
media and media -> text by the relative route (the chosen recipe, bank and tie-break), by the
orthogonal translator fitted on the fold's other pairs (as a build fits its translators), and by
reciprocal-rank fusion of the two (as the suites fuse them).

Where the collection has a label bridge (text queries into images), relative+labels is measured too:
the relative route plus the bridge at its chosen weight, with the anchor pictures' own label vectors.
The route the priors would take stays unless another beats it by more than fold_scores.margin
standard errors of the paired per-query difference (a 5 % test, corrected for the routes tried).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from retrieval.build.fold_scores import Prepared, beats, depth, margin, relative_scores
from retrieval.build.recipe import Recipe
from retrieval.core.metrics import query_recall
from retrieval.core.ranking import rrf
from retrieval.core.translation import Translator
from retrieval.planning.planner import prior

ROUTES = ("relative", "translation", "fusion")
LABELLED = "relative+labels"


def translated(prepared: Prepared, src: str, dst: str, f: int) -> np.ndarray:
    """Fold ``f``'s held-out ``src`` rows against its ``dst`` rows by the translation route: an
    orthogonal map fitted on the fold's other pairs, cosine in the target's standard-scaled coordinates."""
    fit, held = prepared.folds[f]
    x, y = prepared.sides[src], prepared.sides[dst]
    t = Translator("orthogonal").fit(x[fit], y[fit])
    return t.transform_scaled(x[held]) @ t.scale_target(y[held]).T


def route_hits(r: Recipe, prepared: Prepared, bank_weight: Optional[float]) -> Dict[str, Dict[str, np.ndarray]]:
    """{"text->media" / "media->text": {route: R@10 (scaled) per held-out query, all folds}}; text -> media
    also has relative+labels where ``prepared`` holds label vectors (at ``r.label_weight``)."""
    out: Dict[str, Dict[str, List[np.ndarray]]] = {d: {} for d in ("text->media", "media->text")}
    for f in range(len(prepared.folds)):
        rel = relative_scores(r, prepared, f, bank_weight)  # texts x media
        at, truth = depth(len(rel), len(rel) + prepared.n_fit(f)), np.arange(len(rel))
        for d, src, dst, scores in (("text->media", "text", "media", rel), ("media->text", "media", "text", rel.T)):
            tr = translated(prepared, src, dst, f)
            routes = [("relative", scores), ("translation", tr), ("fusion", rrf(scores, tr))]
            if d == "text->media" and prepared.labels is not None:
                routes.append((LABELLED, relative_scores(r, prepared, f, bank_weight, r.label_weight)))
            for route, s in routes:
                out[d].setdefault(route, []).append(query_recall(s, truth, at))
    return {d: {route: np.concatenate(v) for route, v in routes.items()} for d, routes in out.items()}


def priors_choice(query: str, target: str, routes) -> str:
    """The route the global priors take from ``query`` to ``target`` among ``routes``."""
    return max(routes, key=lambda route: prior(route, query, target))


def choose_route(hits: Dict[str, np.ndarray], default: str) -> Dict:
    """The manifest's record of one direction: each route's mean, the priors' choice and the route taken."""
    means = {route: float(h.mean()) for route, h in hits.items()}
    best = max(hits, key=lambda route: means[route])
    won, se = beats(hits[best], hits[default], len(hits) - 1)
    taken = best if won else default
    return {"scores": {route: round(m, 4) for route, m in means.items()}, "queries": int(len(hits[default])),
            "default": default, "route": taken, "standard_error": round(se, 4),
            "margin": round(margin(len(hits) - 1), 2)}


def measure_routes(r: Recipe, prepared: Prepared, bank_weight: Optional[float], modality: str) -> Dict[str, Dict]:
    """Each direction's record, keyed as the planner reads it (``"text->image"``, ``"image->text"``)."""
    got = route_hits(r, prepared, bank_weight)
    out = {}
    for d, (query, target) in (("text->media", ("text", modality)), ("media->text", (modality, "text"))):
        out[f"{query}->{target}"] = choose_route(got[d], priors_choice(query, target, got[d]))
    return out
