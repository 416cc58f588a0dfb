"""The query planner: how to get from the space a query was asked in to the space a collection holds.

Pure: it takes descriptions (the collection's spaces, the bridges between them, sizes) and returns
a :class:`Plan`; it loads no model and touches no file, so it is tested alone.

Routes:

* ``absolute``: the query is in the target's own space (image -> image with the collection's
  image encoder): cosine similarity of raw embeddings.
* ``relative``: an anchor set links the two modalities: both sides become ASIF relative vectors
  over the parallel anchors and are compared there.
* ``translation``: a translator fitted on the anchors maps the query into the target's space,
  then cosine search over the target's embeddings (Maiorca et al., 2023).
* ``fusion``: reciprocal-rank fusion of the relative and translation routes.

Among possible routes the planner picks the highest estimated quality, then the lowest cost. The
quality priors are measured, not guessed (see QUALITY_PRIOR).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from .errors import InputError

ROUTES = ("absolute", "relative", "translation", "fusion")

# Mean of unseen and seen text -> image R@10 (Noto anchors, Twemoji gallery) from
# results/emoji-xstyle/README.md (`retrieval eval --suite emoji-xstyle`): engine default ASIF
# (0.251, 0.792), Procrustes (0.232, 0.585), RRF fusion of the two (0.279, 0.743). Fusion is the
# best route for unseen concepts alone, relative for seen ones; the planner cannot tell which a
# query is, so it takes the best mean. The absolute route compares a query with items of its own
# space and encoder: no bridge loses information.
QUALITY_PRIOR = {"absolute": 1.0, "relative": 0.52, "translation": 0.41, "fusion": 0.51}


@dataclass(frozen=True)
class Space:
    """A latent space: a modality and the encoder spec that produces it."""

    modality: str
    encoder: str


@dataclass(frozen=True)
class Bridge:
    """A link between two modalities: a parallel anchor set (both ways) or a fitted translator (src -> dst)."""

    kind: str                      # "anchors" or "translator"
    modalities: Tuple[str, str]    # anchors: the two sides; translator: (src, dst)
    name: str = ""

    def links(self, a: str, b: str) -> bool:
        if self.kind == "anchors":
            return {a, b} <= set(self.modalities)
        return self.modalities == (a, b)


@dataclass(frozen=True)
class RouteEstimate:
    route: str
    quality: float
    cost: float                    # multiply-adds per query, roughly
    steps: Tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    query: Space
    target: Space
    route: str
    steps: Tuple[str, ...] = field(default_factory=tuple)
    alternatives: Tuple[RouteEstimate, ...] = field(default_factory=tuple)

    def explain(self) -> str:
        """A database-style EXPLAIN: the chosen route's steps, then every possible route's estimates."""
        lines = [f"{self.query.modality} ({self.query.encoder}) -> {self.target.modality} ({self.target.encoder}): "
                 f"route {self.route}"]
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        lines.append(f"  {'route':<12} {'est. quality':>12} {'est. cost':>12}")
        for r in self.alternatives:
            mark = "  <- chosen" if r.route == self.route else ""
            lines.append(f"  {r.route:<12} {r.quality:>12.2f} {r.cost:>12.3g}{mark}")
        lines.append("  (quality: measured mean R@10 of the route, results/emoji-xstyle; cost: multiply-adds a query)")
        return "\n".join(lines)


def _estimates(q: Space, t: Space, bridges: Sequence[Bridge], sizes: Dict[str, int]) -> Dict[str, RouteEstimate]:
    n = sizes.get("items", 0)
    a, k = sizes.get("anchors", 0), sizes.get("k", 0)
    dq, dt = sizes.get(f"dim_{q.modality}", 0), sizes.get(f"dim_{t.modality}", 0)
    out = {}
    if q == t:
        out["absolute"] = RouteEstimate("absolute", QUALITY_PRIOR["absolute"], float(n * dt),
                                        (f"encode query with {q.encoder}", f"cosine search over the {t.modality} embeddings"))
    anchors = [b for b in bridges if b.kind == "anchors" and b.links(q.modality, t.modality)]
    if anchors and q.modality != t.modality:
        out["relative"] = RouteEstimate(
            "relative", QUALITY_PRIOR["relative"], float(a * dq + n * k),
            (f"encode query with {q.encoder}",
             f"relativise against the {q.modality} side of anchors {anchors[0].name or ''}".rstrip() + " (ASIF top-k, power p)",
             f"sparse inner product against the {t.modality} relative vectors", "break ties by dense relative cosine"))
    translators = [b for b in bridges if b.kind == "translator" and b.links(q.modality, t.modality)]
    if translators:
        out["translation"] = RouteEstimate(
            "translation", QUALITY_PRIOR["translation"], float(dq * dt + n * dt),
            (f"encode query with {q.encoder}", f"translate {q.modality} -> {t.modality} ({translators[0].name})",
             f"cosine search over the {t.modality} embeddings (standard-scaled by the anchors)"))
    if "relative" in out and "translation" in out:
        out["fusion"] = RouteEstimate("fusion", QUALITY_PRIOR["fusion"], out["relative"].cost + out["translation"].cost,
                                      ("run the relative and translation routes",
                                       "reciprocal-rank fusion of their rankings"))
    return out


def plan(query_modality: str, target_modality: str, spaces: Dict[str, str], bridges: Sequence[Bridge],
         *, route: Optional[str] = None, sizes: Optional[Dict[str, int]] = None) -> Plan:
    """Choose a route from a query modality to a target modality of a collection.

    ``spaces`` maps each modality the collection has vectors for to its encoder spec; ``bridges``
    are the anchor sets and translators it holds; ``sizes`` (items, anchors, k, dim_<modality>)
    feed the cost estimates.

    >>> plan("text", "image", {"image": "efficientnet-lite0", "text": "minilm"},
    ...      [Bridge("anchors", ("image", "text"))]).route
    'relative'
    """
    if query_modality not in spaces:
        raise InputError(f"expected a query in one of this collection's spaces {sorted(spaces)}, "
                         f"got a query in {query_modality!r}")
    if target_modality not in spaces:
        raise InputError(f"expected a target among this collection's spaces {sorted(spaces)}, got {target_modality!r}")
    if route is not None and route not in ROUTES:
        raise InputError(f"expected a route in {ROUTES}, got {route!r}")
    q, t = Space(query_modality, spaces[query_modality]), Space(target_modality, spaces[target_modality])
    est = _estimates(q, t, bridges, sizes or {})
    if not est:
        links = [f"{b.kind} {'<->' if b.kind == 'anchors' else '->'} {'/'.join(b.modalities)}" for b in bridges]
        raise InputError(f"no route from {query_modality} ({q.encoder}) to {target_modality} ({t.encoder}): "
                         f"the collection holds {sorted(spaces)} linked by {links or 'nothing'}")
    if route is not None and route not in est:
        raise InputError(f"route {route!r} is impossible from {query_modality} to {target_modality}; "
                         f"possible: {list(est)}")
    chosen = route or max(est.values(), key=lambda r: (r.quality, -r.cost)).route
    alternatives = tuple(sorted(est.values(), key=lambda r: (-r.quality, r.cost)))
    return Plan(q, t, chosen, est[chosen].steps, alternatives)
