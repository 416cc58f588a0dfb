"""Zero-shot stitching: queries encoded by another encoder than the collection was built with.

Relative vectors are similarities to the anchors, so a query embedded by encoder B is comparable
with items embedded by encoder A once the *anchors* are embedded by B too (Moschella et al., ICLR
2023): the query is relativised against the B-encoded anchors and compared with the items' stored
relative vectors (the planner's ``relative`` route, stitched). The same anchor pairs, encoded by
both, also fit an orthogonal map from B's space into A's, after which every route of the collection
is open (the ``stitch`` route, then the best route from A). Nothing of the corpus is encoded again.

The anchors must be encodable by B: their files must still be readable. The anchor table named in
the manifest (``anchors.source``) is used when it is there and unchanged (its content hash), which
keeps anchors drawn several ways; otherwise the files listed in ``anchors.parquet``. Captions are
stored in the collection, so a stitched *text* encoder always works.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from retrieval.build.anchors import AnchorSet, encode_anchors, load_anchor_set
from retrieval.core.relative import RelativeProjector
from retrieval.core.style import fit_views
from retrieval.core.translation import Translator
from retrieval.encoders import Encoder
from retrieval.errors import InputError, RetrievalError
from retrieval.store.format import read_parquet


@dataclass
class Stitched:
    """What a query of one modality needs to reach a collection from another encoder's space."""

    encoder: Encoder          # the query's encoder (B)
    projector: RelativeProjector  # B-encoded anchors, the collection's k, p, centring (and a B style normaliser)
    translator: Translator    # B -> A, fitted on the anchors encoded by both
    anchors: str              # where the anchors came from (for EXPLAIN)


def _anchor_set(folder: Path, manifest: Dict, modality: str) -> AnchorSet:
    """The collection's anchors with readable files: the original table (views kept) when it is there
    and unchanged, else the rows the collection stores. Refused with what is missing otherwise."""
    source, want = manifest["anchors"].get("source", ""), manifest["anchors"].get("content_hash", "")
    if source and os.path.isfile(source):
        try:
            original = load_anchor_set(source, modality)
            if original.content_hash == want:
                return original
        except RetrievalError:
            pass
    table = read_parquet(folder, "anchors.parquet", columns=[modality, "caption"])
    paths = table.column(modality).to_pylist()
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"expected the anchors' {modality} files to encode them with the query's encoder, but "
                         f"{len(missing)} of {len(paths)} are missing (e.g. {missing[0]!r}) and the anchor table "
                         f"{source!r} is gone or changed; restore the files, or rebuild the collection with that "
                         f"encoder")
    return AnchorSet(paths, table.column("caption").to_pylist(), source=str(folder / "anchors.parquet"),
                     modality=modality)


def stitch(folder: Path, manifest: Dict, modality: str, encoder: Encoder, a_vectors: np.ndarray,
           projector_params: Dict, cache_dir: Optional[str] = None) -> Stitched:
    """Fit what queries of ``modality`` encoded by ``encoder`` need: the anchors encoded by it (cached
    by content hash, like every anchor encoding), a projector over them with the collection's own
    settings, and the orthogonal map into the collection's space (``a_vectors``: its anchor vectors)."""
    items_modality = manifest["items"]["modality"]
    if modality == "text":
        table = read_parquet(folder, "anchors.parquet", columns=["caption"])
        captions = table.column("caption").to_pylist()
        b_vecs = encoder.encode(captions, batch_size=64, show_progress_bar=False)
        where, style = "the stored anchor captions", None
    elif modality == items_modality:
        anchor_set = _anchor_set(folder, manifest, modality)
        b_vecs = encode_anchors(anchor_set, encoder, modality, cache_dir=cache_dir, show_progress_bar=False)
        style = None
        if anchor_set.has_views:  # prototypes per concept and a style normaliser, as the build made them
            style, _, b_vecs, _ = fit_views(anchor_set.concepts, b_vecs, np.zeros((len(b_vecs), 1), np.float32))
        where = anchor_set.source
    else:
        raise InputError(f"expected a stitched encoder for the collection's items ({items_modality}) or text, got "
                         f"one for {modality}; pivot modalities keep the encoder they were built with")
    if len(b_vecs) != len(a_vectors):
        raise InputError(f"expected the anchors encoded by {encoder.name!r} to match the collection's "
                         f"{len(a_vectors)} anchors, got {len(b_vecs)}; the anchor files changed since the build")
    projector = RelativeProjector(**projector_params, style=style).fit(b_vecs)
    translator = Translator("orthogonal").fit(b_vecs, a_vectors)
    return Stitched(encoder, projector, translator, where)
