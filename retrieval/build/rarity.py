"""Weigh the anchors by their rarity in the corpus (retrieval/core/rarity.py), when a build asks for it.

The weights are learnt from the corpus items' relative vectors (all of them, or a seeded sample of
SAMPLE) and stored in the items' spec alone: text queries and the texts' vectors are unchanged, the
items carry the weights (the form the crossdomain suite measures). Below MIN_ITEMS items there is too little corpus to count on: the step is
left out and the build says so. Build, reanchor and the suites all reach it through
:func:`relativised_items` (the build through retrieval/build/writer.py's ``relativise``).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from retrieval.core.projector import Spec, is_blocks
from retrieval.core.rarity import Rarity, rarity_weights

log = logging.getLogger(__name__)

MIN_ITEMS = 200
SAMPLE = 20000


def sample_rows(n: int) -> np.ndarray:
    """The rows the weights are learnt from: all, or a seeded sample of SAMPLE in order."""
    if n <= SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SAMPLE, replace=False))


def with_weights(spec: Spec, weights: Dict[str, np.ndarray]) -> Spec:
    """``spec`` with a rarity step after each chain's relativiser (blocks by name; a chain is "anchors")."""
    if is_blocks(spec):
        return dict(spec, blocks={n: with_weights(c, {"anchors": weights[n]}) for n, c in spec["blocks"].items()})
    return list(spec) + [Rarity(weights["anchors"]).to_spec()]


def block_weights(projector, rel, power: float) -> Dict[str, np.ndarray]:
    """Per block of the fitted ``projector``, the rarity weights of its columns of ``rel``."""
    blocks = getattr(projector, "blocks", {"anchors": projector})
    out, at = {}, 0
    for name, chain in blocks.items():
        out[name] = rarity_weights(rel[:, at:at + chain.n_anchors_], power)
        at += chain.n_anchors_
    return out


def weighted_specs(specs: Dict[str, Spec], modality: str, fitted, items: np.ndarray, power: float,
                   rel=None) -> Tuple[Dict[str, Spec], Optional[Dict]]:
    """(``specs`` with the rarity step, the manifest's record), or (``specs`` unchanged, the record of
    why not). ``fitted``: the items' projector fitted from ``specs[modality]``; ``rel``: the items'
    relative vectors when they are already made (else a sample of ``items`` is relativised)."""
    n = len(items) if rel is None else rel.shape[0]
    if not power:
        return specs, None
    if n < MIN_ITEMS:
        why = f"{n} corpus items, fewer than {MIN_ITEMS}: too few to tell the anchors every item keeps"
        log.info("anchor rarity left out: %s", why)
        return specs, {"power": power, "applied": False, "why": why}
    rows = sample_rows(n)
    sample = fitted.transform(np.asarray(items[rows], np.float32)) if rel is None else rel[rows]
    weights = block_weights(fitted, sample, power)
    return (dict(specs, **{modality: with_weights(specs[modality], weights)}),
            {"power": power, "applied": True, "items": int(len(rows)),
             "max_weight": round(float(max(w.max() for w in weights.values())), 4)})


def relativised_items(specs: Dict[str, Spec], modality: str, fit: Callable, items: np.ndarray, power: float,
                      raw=None):
    """(specs, the items' projector, the items' relative vectors, the record of :func:`weighted_specs`):
    what a build makes of its items. ``fit(spec)`` fits the items' projector; ``raw``: the items'
    relative vectors without the weights, when made elsewhere. When the weights are learnt from every
    item, the items are relativised once and only reweighted after."""
    fitted = fit(specs[modality])
    if raw is None and power and len(items) <= SAMPLE:
        raw = fitted.transform(items)
    weighted, record = weighted_specs(specs, modality, fitted, items, power, raw)
    if weighted is not specs:
        specs, fitted = weighted, fit(weighted[modality])
    return specs, fitted, fitted.transform(items) if raw is None else fitted.finish(raw), record
