"""The query planner: how to get from the space a query was asked in to the space a collection holds.

Pure: it takes descriptions (which modalities the collection has vectors for, which the anchor set
links) and returns a :class:`Plan`; it loads no model and touches no file, so it is tested alone.

Routes in this release:

* ``absolute``: the query is in the same space as the target (image -> image with the collection's
  own image encoder): cosine similarity of raw embeddings, the most faithful comparison there is.
* ``relative``: the query and the target are in different modalities linked by the anchor set:
  both sides become ASIF relative vectors over the parallel anchors and are compared there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

from .errors import InputError

ROUTES = ("absolute", "relative")


@dataclass(frozen=True)
class Space:
    """A latent space: a modality and the encoder spec that produces it."""

    modality: str
    encoder: str


@dataclass(frozen=True)
class Plan:
    query: Space
    target: Space
    route: str
    steps: Tuple[str, ...] = field(default_factory=tuple)

    def explain(self) -> str:
        return f"{self.query.modality} -> {self.target.modality} via {self.route}: " + "; ".join(self.steps)


def plan(query_modality: str, target_modality: str, spaces: Dict[str, str], anchor_modalities: Sequence[str],
         *, route: Optional[str] = None) -> Plan:
    """Choose a route.

    ``spaces`` maps each modality the collection has vectors for to its encoder spec;
    ``anchor_modalities`` are the sides of the parallel anchor set.

    >>> plan("text", "image", {"image": "efficientnet-lite0", "text": "minilm"}, ["image", "text"]).route
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
    possible = []
    if q == t:
        possible.append("absolute")
    if query_modality in anchor_modalities and target_modality in anchor_modalities:
        possible.append("relative")
    if not possible:
        raise InputError(f"no route from {query_modality} ({q.encoder}) to {target_modality} ({t.encoder}): "
                         f"the anchors link {sorted(anchor_modalities)} and the collection holds {sorted(spaces)}")
    if route is not None and route not in possible:
        raise InputError(f"route {route!r} is impossible from {query_modality} to {target_modality}; "
                         f"possible: {possible}")
    chosen = route or possible[0]  # absolute first: same space beats any bridge
    if chosen == "absolute":
        steps = (f"encode query with {q.encoder}", f"cosine search over the {target_modality} embeddings")
    else:
        steps = (f"encode query with {q.encoder}", f"relativise against the {query_modality} anchors (ASIF top-k, power p)",
                 f"sparse inner product against the {target_modality} relative vectors",
                 "break ties by dense relative cosine")
    return Plan(q, t, chosen, steps)
