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
* ``relative+labels``: the relative route's ASIF score plus a weighted second bridge that needs no
  anchors: the image encoder's own classifier head names what an image shows, and those names'
  text embeddings place the image in text space (retrieval/encoders/labels.py); text queries into images.
* ``fusion``: reciprocal-rank fusion of the relative and translation routes.
* ``pivot``: no bridge links the query's modality with the target's, but an anchor set links it with
  a third modality that has a route to the target (audio -> text via audio-text anchors, then text
  -> image). The query is relativised against its side of the pivot anchors and re-expressed in the
  third space as the same weighted mix of the other side's anchors; the best route from there
  finishes the trip.
* captions (not a route: a last step of any route a text query takes to the items of a partly
  captioned collection): the items whose own caption matches the query come first
  (retrieval/core/caption_match.py). It reorders only where a caption matches about as well as the
  query matches itself, so the route's estimate stands (measured in results/captions).
* ``stitch``: the query was encoded by another encoder than the collection's (zero-shot stitching,
  retrieval/api/stitch.py): an orthogonal map fitted on the anchors, encoded by both, carries it
  into the collection's space, and the best route from there finishes the trip. A stitched query
  can also take the ``relative`` route directly: relativised against the anchors as its own encoder
  sees them, it is compared with the stored relative vectors (for its own modality too).

Among possible routes the planner picks the highest estimated quality, then the lowest cost. The
quality priors are measured, not guessed (see QUALITY_PRIOR). A collection built with ``--tune``
measured its own routes on validation folds of its pairs (retrieval/build/tune_routes.py): for a
query in its own spaces, the route it chose comes first (``measured``), the priors after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from retrieval.errors import InputError, UnsupportedQueryError

ROUTES = ("absolute", "relative", "relative+labels", "translation", "fusion", "pivot", "stitch")

# Mean of unseen and seen text -> image R@10 (Noto anchors, Twemoji gallery) from
# results/emoji-xstyle/README.md (`retrieval eval --suite emoji-xstyle`): engine default ASIF
# (0.251, 0.792), Procrustes (0.232, 0.585), RRF fusion of the two (0.279, 0.743). Fusion is the
# best route for unseen concepts alone, relative for seen ones; the planner cannot tell which a
# query is, so it takes the best mean. The absolute route compares a query with items of its own
# space and encoder: no bridge loses information. These are the defaults for any pair of
# modalities; image -> text uses them too (results/pictures now measures that direction: the
# relative route above plain ASIF and Procrustes on every source).
# relative+labels: relative's estimate plus the mean test R@10 the label bridge added to the default's
# ASIF (whitened, with the background bank) across the single-view suites of results/pictures
# (`retrieval eval --suite pictures`, rerun 2026-12-03: +0.065, +0.000, +0.040, +0.005, mean +0.03); higher than
# relative's, so it is taken wherever it exists.
QUALITY_PRIOR = {"absolute": 1.0, "relative": 0.52, "translation": 0.41, "fusion": 0.51, "relative+labels": 0.55}
# Measured per pair of modalities where suites exist: R@10 of each route in the two audio suites
# (`retrieval eval --suite sounds`: 149 named sound effects; `--suite instruments`: 175 General MIDI
# sounds; unseen names only, 5 random two-fold splits each), averaged with their query counts as
# weights; tests/test_scripts.py checks these against both suites' summary.json. Fusion is the best
# in both directions pooled and in three of the four suite-directions; the differences are within
# about two standard errors, and the suites' READMEs say so.
PAIR_PRIOR = {
    ("text", "audio"): {"relative": 0.532, "translation": 0.532, "fusion": 0.552},
    ("audio", "text"): {"relative": 0.525, "translation": 0.520, "fusion": 0.544},
}


def prior(route: str, query_modality: str, target_modality: str) -> float:
    """The quality estimate of a direct route between two modalities (see QUALITY_PRIOR, PAIR_PRIOR)."""
    return PAIR_PRIOR.get((query_modality, target_modality), {}).get(route, QUALITY_PRIOR[route])


# A pivot's estimate is this factor times the estimate of the route it continues with: the share of
# R@10 the audio hop keeps, measured in results/sounds/README.md (sound -> emoji through text, against
# the emoji's own caption). The pivot is only offered when no direct route exists, so this number
# orders nothing; it keeps EXPLAIN honest about how much weaker a two-hop trip is.
PIVOT_HOP = 0.23

# Stitched queries (another encoder than the build's), measured in results/stitching/README.md
# (`python scripts/stitching_experiment.py`: EfficientNet-Lite0 and -Lite2 both ways, 1,744 OpenMoji
# queries, R@10 as a share of a collection re-encoded with the query's own network). The stitch route
# kept 0.89 and 0.76 of image -> image (mean 0.82) and 0.75 and 0.89 of image -> text: STITCH_HOP
# multiplies the continuation's estimate. The stitched relative route kept 0.67 and 0.63 of image ->
# image (STITCH_SAME_MODALITY) and exactly 1.00 of image -> text, where it computes what a re-encoded
# collection computes (the query's relative vector against the anchors as its own network sees them).
STITCH_HOP = 0.82
STITCH_SAME_MODALITY = 0.65


@dataclass(frozen=True)
class Space:
    """A latent space: a modality and the encoder spec that produces it."""

    modality: str
    encoder: str


@dataclass(frozen=True)
class Bridge:
    """A link between two modalities: a parallel anchor set (both ways) or a fitted translator (src -> dst)."""

    kind: str                      # "anchors", "translator", "labels" or "captions"
    modalities: Tuple[str, str]    # anchors: the two sides; translator, labels and captions: (src, dst)
    name: str = ""
    # anchors only: True when the collection's relative vectors are over this set (a relative route can
    # end here); False for a pivot set, which can only carry a query into another space.
    indexed: bool = True

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
    via: Optional[str] = None      # pivot: the modality passed through
    then: Optional[str] = None     # pivot: the route taken from there


@dataclass(frozen=True)
class Plan:
    query: Space
    target: Space
    route: str
    steps: Tuple[str, ...] = field(default_factory=tuple)
    alternatives: Tuple[RouteEstimate, ...] = field(default_factory=tuple)
    via: Optional[str] = None
    then: Optional[str] = None
    captions: bool = False  # the items' own captions are matched too (caption_match.py)
    measured: Optional[Dict] = None  # this direction's routes measured on the collection's own pairs (--tune)

    def to_dict(self) -> Dict:
        """The plan as JSON-ready data (``retrieval explain --json`` and the HTTP API print this)."""
        return {"query": {"modality": self.query.modality, "encoder": self.query.encoder},
                "target": {"modality": self.target.modality, "encoder": self.target.encoder},
                "route": self.route, "via": self.via, "then": self.then, "steps": list(self.steps),
                "captions": self.captions, "measured": self.measured,
                "alternatives": [{"route": r.route, "via": r.via, "then": r.then, "est_quality": r.quality,
                                  "est_cost": r.cost} for r in self.alternatives]}

    def explain(self) -> str:
        """A database-style EXPLAIN: the chosen route's steps, then every possible route's estimates."""
        lines = [f"{self.query.modality} ({self.query.encoder}) -> {self.target.modality} ({self.target.encoder}): "
                 f"route {self.route}"]
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        lines.append(f"  {'route':<24} {'est. quality':>12} {'est. cost':>12}")
        for r in self.alternatives:
            mark = "  <- chosen" if r.route == self.route else ""
            name = f"{r.route}({r.via}, {r.then})" if r.route in ("pivot", "stitch") else r.route
            lines.append(f"  {name:<24} {r.quality:>12.2f} {r.cost:>12.3g}{mark}")
        lines.append("  (quality: measured R@10 of the route, results/emoji-xstyle, results/pictures, results/sounds or "
                     "results/stitching; a pivot's or a stitch's is its hop factor times its continuation's; cost: "
                     "multiply-adds a query)")
        if self.measured:
            lines.append(_measured_words(self.measured))
        return "\n".join(lines)


def _measured_words(m: Dict) -> str:
    """EXPLAIN's line for the routes a collection measured on its own pairs (build --tune)."""
    scores = ", ".join(f"{r} {v:.3f}" for r, v in m["scores"].items())
    best, default, se = max(m["scores"], key=m["scores"].get), m["default"], m["standard_error"]
    if m["route"] == default == best or m["scores"][best] == m["scores"][default]:
        why = "the priors' choice, and the best on the folds"
    elif m["route"] == best:
        why = f"it beat the priors' choice, {default}, by more than {m['margin']:g} standard errors ({se:.3f})"
    else:
        why = f"the priors' choice: {best}'s lead is within {m['margin']:g} standard errors ({se:.3f})"
    return (f"  this collection's own pairs (build --tune, validation folds, {m['queries']} queries): {scores}; "
            f"taken: {m['route']} ({why})")


def _direct(q: Space, t: Space, bridges: Sequence[Bridge], sizes: Dict[str, int]) -> Dict[str, RouteEstimate]:
    """Routes that need no third space."""
    n = sizes.get("items", 0)
    a, k = sizes.get("anchors", 0), sizes.get("k", 0)
    dq, dt = sizes.get(f"dim_{q.modality}", 0), sizes.get(f"dim_{t.modality}", 0)
    out = {}
    if q == t:
        out["absolute"] = RouteEstimate("absolute", prior("absolute", q.modality, t.modality), float(n * dt),
                                        (f"encode query with {q.encoder}", f"cosine search over the {t.modality} embeddings"))
    anchors = [b for b in bridges if b.kind == "anchors" and b.indexed and b.links(q.modality, t.modality)]
    if anchors and q.modality != t.modality:
        out["relative"] = RouteEstimate(
            "relative", prior("relative", q.modality, t.modality), float(a * dq + n * k),
            (f"encode query with {q.encoder}",
             f"relativise against the {q.modality} side of anchors {anchors[0].name or ''}".rstrip() + " (ASIF top-k, power p)",
             f"sparse inner product against the {t.modality} relative vectors", "break ties by dense relative cosine"))
    translators = [b for b in bridges if b.kind == "translator" and b.links(q.modality, t.modality)]
    if translators:
        out["translation"] = RouteEstimate(
            "translation", prior("translation", q.modality, t.modality), float(dq * dt + n * dt),
            (f"encode query with {q.encoder}", f"translate {q.modality} -> {t.modality} ({translators[0].name})",
             f"cosine search over the {t.modality} embeddings (standard-scaled by the anchors)"))
    labels = [b for b in bridges if b.kind == "labels" and b.links(q.modality, t.modality)]
    if "relative" in out and labels:
        out["relative+labels"] = RouteEstimate(
            "relative+labels", prior("relative+labels", q.modality, t.modality),
            out["relative"].cost + float(n * dq),
            out["relative"].steps[:-1] + (f"add the weighted label bridge: cosine with each {t.modality}'s "
                                          f"classifier-named text point ({labels[0].name})",
                                          out["relative"].steps[-1]))
    if "relative" in out and "translation" in out:
        out["fusion"] = RouteEstimate("fusion", prior("fusion", q.modality, t.modality), out["relative"].cost + out["translation"].cost,
                                      ("run the relative and translation routes",
                                       "reciprocal-rank fusion of their rankings"))
    return out


def _best(est: Dict[str, RouteEstimate]) -> RouteEstimate:
    return max(est.values(), key=lambda r: (r.quality, -r.cost))


def _pivots(q: Space, t: Space, spaces: Dict[str, str], bridges: Sequence[Bridge],
            sizes: Dict[str, int]) -> Dict[str, RouteEstimate]:
    """The best pivot: into a third modality through an anchor set, then the best direct route on."""
    options = []
    for b in bridges:
        if b.kind != "anchors" or q.modality not in b.modalities or b.modalities[0] == b.modalities[1]:
            continue
        via = b.modalities[1] if b.modalities[0] == q.modality else b.modalities[0]
        if via not in spaces:
            continue
        on = _direct(Space(via, spaces[via]), t, bridges, sizes)
        if not on:
            continue
        nxt = _best(on)
        a, dq, dv = sizes.get(f"anchors_{q.modality}_{via}", 0), sizes.get(f"dim_{q.modality}", 0), sizes.get(f"dim_{via}", 0)
        steps = (f"encode query with {q.encoder}",
                 f"relativise against the {q.modality} side of anchors {b.name}".rstrip() + " (ASIF top-k, power p)",
                 f"pivot into {via} ({spaces[via]}): the same weights over the {via} side of those anchors, centred",
                 *(f"then {s}" if i == 0 else s for i, s in enumerate(nxt.steps[1:])))
        options.append(RouteEstimate("pivot", PIVOT_HOP * nxt.quality, float(a * (dq + dv)) + nxt.cost, steps,
                                     via=via, then=nxt.route))
    return {"pivot": max(options, key=lambda r: (r.quality, -r.cost))} if options else {}


def _stitched(q: Space, t: Space, spaces: Dict[str, str], bridges: Sequence[Bridge],
              sizes: Dict[str, int]) -> Dict[str, RouteEstimate]:
    """Routes for a query encoded by another encoder than the collection's for its modality."""
    out = {}
    own = Space(q.modality, spaces[q.modality])
    anchors = [b for b in bridges if b.kind == "anchors" and b.indexed and b.links(q.modality, t.modality)]
    a, k, n = sizes.get("anchors", 0), sizes.get("k", 0), sizes.get("items", 0)
    dq = sizes.get(f"dim_{q.modality}", 0)
    if anchors:
        quality = (STITCH_SAME_MODALITY * prior("absolute", q.modality, t.modality) if q.modality == t.modality
                   else prior("relative", q.modality, t.modality))
        out["relative"] = RouteEstimate(
            "relative", quality, float(a * dq + n * k),
            (f"encode query with {q.encoder} (the collection's {q.modality} encoder is {own.encoder})",
             f"relativise against the anchors as {q.encoder} encodes them (ASIF top-k, power p)",
             f"sparse inner product against the {t.modality} relative vectors", "break ties by dense relative cosine"))
    on = _direct(own, t, bridges, sizes)
    if on and anchors:
        nxt = _best(on)
        steps = (f"encode query with {q.encoder}",
                 f"map it into {own.encoder}'s space (orthogonal, fitted on the anchors encoded by both)",
                 *(f"then {s}" if i == 0 else s for i, s in enumerate(nxt.steps[1:])))
        out["stitch"] = RouteEstimate("stitch", STITCH_HOP * nxt.quality, float(dq * dq) + nxt.cost, steps,
                                      via=own.encoder, then=nxt.route)
    return out


def _estimates(q: Space, t: Space, spaces: Dict[str, str], bridges: Sequence[Bridge],
               sizes: Dict[str, int]) -> Dict[str, RouteEstimate]:
    if q.encoder != spaces.get(q.modality):
        return _stitched(q, t, spaces, bridges, sizes)
    out = _direct(q, t, bridges, sizes)
    if not out:  # a pivot only when nothing links the two spaces directly
        out = _pivots(q, t, spaces, bridges, sizes)
    return out


def _caption_steps(q: Space, t: Space, spaces: Dict[str, str], bridges: Sequence[Bridge]) -> Tuple[str, ...]:
    """The caption match's steps, where a text query in the collection's own text space meets items
    that have captions (a captions bridge); none otherwise."""
    found = [b for b in bridges if b.kind == "captions" and b.links(q.modality, t.modality)]
    if not found or q.encoder != spaces.get(q.modality):
        return ()
    return (f"match the items' own captions ({found[0].name}): text cosine in {q.encoder} above the corpus's "
            "threshold, or every query word in the caption (BM25)",
            "matched items first (by cosine, then BM25), the rest in the route's order")


def _measured_choice(est: Dict[str, RouteEstimate], m: Optional[Dict]) -> Optional[RouteEstimate]:
    """The route a collection measured best for this direction (build --tune), if it is possible here."""
    return est.get(m["route"]) if m else None


def plan(query_modality: str, target_modality: str, spaces: Dict[str, str], bridges: Sequence[Bridge],
         *, route: Optional[str] = None, sizes: Optional[Dict[str, int]] = None,
         query_encoder: Optional[str] = None, captions: bool = True,
         measured: Optional[Dict[str, Dict]] = None) -> Plan:
    """Choose a route from a query modality to a target modality of a collection.

    ``spaces`` maps each modality the collection has an encoder for to its spec; ``bridges`` are
    the anchor sets and translators it holds; ``sizes`` (items, anchors, k, dim_<modality>,
    anchors_<from>_<via>) feed the cost estimates. ``query_encoder``: the query's encoder when it is
    not the collection's for that modality (a stitched query). ``captions=False`` leaves out the
    caption match a captions bridge offers. ``measured``: the collection's own route per direction
    (``{"text->image": {"route": ..., "scores": {...}, ...}}``, build --tune's record), taken before
    the priors for queries in the collection's own spaces.

    >>> plan("text", "image", {"image": "efficientnet-lite0", "text": "minilm"},
    ...      [Bridge("anchors", ("image", "text"))]).route
    'relative'
    """
    if query_modality not in spaces:
        raise UnsupportedQueryError(f"expected a query in one of this collection's spaces {sorted(spaces)}, "
                         f"got a query in {query_modality!r}")
    if target_modality not in spaces:
        raise UnsupportedQueryError(f"expected a target among this collection's spaces {sorted(spaces)}, got {target_modality!r}")
    if route is not None and route not in ROUTES:
        raise InputError(f"expected a route in {ROUTES}, got {route!r}")
    q = Space(query_modality, query_encoder or spaces[query_modality])
    t = Space(target_modality, spaces[target_modality])
    est = _estimates(q, t, spaces, bridges, sizes or {})
    if not est:
        links = [f"{b.kind} {'<->' if b.kind == 'anchors' else '->'} {'/'.join(b.modalities)}"
                 f"{'' if b.indexed or b.kind != 'anchors' else ' (pivot)'}" for b in bridges]
        raise UnsupportedQueryError(f"no route from {query_modality} ({q.encoder}) to {target_modality} ({t.encoder}): "
                         f"the collection holds {sorted(spaces)} linked by {links or 'nothing'}")
    if route is not None and route not in est:
        raise UnsupportedQueryError(f"route {route!r} is impossible from {query_modality} to {target_modality}; "
                         f"possible: {list(est)}")
    own = None if query_encoder not in (None, spaces[query_modality]) else \
        (measured or {}).get(f"{query_modality}->{target_modality}")
    chosen = est[route] if route else _measured_choice(est, own) or _best(est)
    alternatives = tuple(sorted(est.values(), key=lambda r: (-r.quality, r.cost)))
    extra = _caption_steps(q, t, spaces, bridges) if captions else ()
    return Plan(q, t, chosen.route, chosen.steps + extra, alternatives, chosen.via, chosen.then, bool(extra), own)
