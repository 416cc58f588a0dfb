"""A collection's projectors, rebuilt from its manifest: one function for the reader, stitching,
classification and the distributed build.

Format 7 stores each modality's projector as a spec, the list of its steps (retrieval/core/step.py):
``"projectors": {"image": [...], "text": [...]}``, and each pivot set's under its entry. Formats 1 to 6
stored flat parameters (``"projector": {"kind", "k", "p", "center", "whiten", "background", ...}``) for
both sides, the style normaliser applying to the items' modality: they are read as the same chains
(:func:`retrieval.core.projector.spec_from_params`), so they answer exactly as they did.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from retrieval.core.projector import Spec, fit_projector, is_blocks, spec_from_params, spec_summary, without_background


def specs(manifest: Mapping) -> Dict[str, Spec]:
    """Each relativised modality's projector spec: the items' modality and text."""
    if "projectors" in manifest:
        return dict(manifest["projectors"])
    params, modality = manifest["projector"], manifest["items"]["modality"]
    styled = manifest.get("style", {}).get("modality")
    return {m: spec_from_params(params, style=styled == m) for m in (modality, "text")}


def pivot_spec(manifest: Mapping, pivot: Mapping) -> Spec:
    """A pivot set's projector spec. Written before pivot sets had their own p ("p" absent), they used
    the main set's; pivot sets are never whitened and have no background bank."""
    if "projector" in pivot:
        return pivot["projector"]
    params = manifest["projector"]
    return spec_from_params(dict(without_background(params), k=pivot["k"], p=pivot.get("p", params["p"]), whiten=0.0))


def bank_count(manifest: Mapping) -> int:
    """Rows of the background bank stored after the anchors (0: none)."""
    return int(manifest["anchors"].get("background", {}).get("count", 0))


def summary(manifest: Mapping) -> Dict:
    """The flat description of the items' projector (``kind``, ``k``, ``p``, ``center``, ``whiten``,
    the bank's ``background`` count, weight and k): what ``info`` and EXPLAIN show, and what a
    reencode keeps."""
    if "projectors" not in manifest:
        return dict(manifest["projector"])
    out = spec_summary(manifest["projectors"][manifest["items"]["modality"]])
    if bank_count(manifest):
        out["background"] = bank_count(manifest)
    return out


def pivot_summary(manifest: Mapping, pivot: Mapping) -> Dict:
    """A pivot set's projector in the flat form (see :func:`summary`)."""
    return spec_summary(pivot_spec(manifest, pivot))


def parts(manifest: Mapping, spec: Spec, vectors: np.ndarray) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """A modality's stored anchor ``vectors`` split into the anchors' and the background bank's (its
    rows come after the anchors'), the bank None when the spec has no bank block."""
    n = bank_count(manifest) if is_blocks(spec) else 0
    return (vectors[:-n], vectors[-n:]) if n else (vectors, None)


def fitted(manifest: Mapping, spec: Spec, vectors: np.ndarray, *, style=None, **engine):
    """The projector ``spec`` describes fitted on a modality's stored anchor ``vectors``."""
    anchors, bank = parts(manifest, spec, vectors)
    return fit_projector(spec, anchors, bank=bank, style=style, **engine)


def engine_for(device: str) -> Dict:
    """The top-k engine for queries on ``device``: relativised on the GPU too when it is one."""
    return {"select": "torch", "device": device} if str(device).startswith("cuda") else {}


def style_for(manifest: Mapping, modality: str, style) -> Optional[object]:
    """The style normaliser for ``modality``'s projector: the collection's, on its own modality."""
    return style if manifest.get("style", {}).get("modality") == modality else None
