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

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from retrieval.build.anchors import encode_anchors, stored_anchor_set
from retrieval.build.background import stored_bank
from retrieval.build.self_anchors import in_corpus_domain
from retrieval.core.style import fit_views
from retrieval.core.translation import Translator
from retrieval.encoders import Encoder
from retrieval.errors import InputError
from retrieval.store.format import read_parquet
from retrieval.store.projectors import fitted, specs


@dataclass
class Stitched:
    """What a query of one modality needs to reach a collection from another encoder's space."""

    encoder: Encoder          # the query's encoder (B)
    projector: object  # a chain (retrieval/core/step.py) over the B-encoded anchors, the collection's k, p, centring (and a B style normaliser)
    translator: Translator    # B -> A, fitted on the anchors encoded by both
    anchors: str              # where the anchors came from (for EXPLAIN)


def stitch(folder: Path, manifest: Dict, modality: str, encoder: Encoder, a_vectors: np.ndarray,
           cache_dir: Optional[str] = None) -> Stitched:
    """Fit what queries of ``modality`` encoded by ``encoder`` need: the anchors encoded by it (cached
    by content hash, like every anchor encoding), a projector over them with the collection's own
    settings, and the orthogonal map into the collection's space (``a_vectors``: its anchor vectors)."""
    items_modality = manifest["items"]["modality"]
    if modality == "text":
        table = read_parquet(folder, "anchors.parquet", columns=["caption"])
        captions = table.column("caption").to_pylist()
        b_vecs = in_corpus_domain(encoder.encode(captions, batch_size=64, show_progress_bar=False), manifest["anchors"])
        where, style = "the stored anchor captions", None
    elif modality == items_modality:
        own = bool((manifest["anchors"].get("self") or {}).get("kept"))  # the stored rows hold the corpus's pairs
        anchor_set = stored_anchor_set(folder, manifest, modality, "encode them with the query's encoder", original=not own)
        b_vecs = encode_anchors(anchor_set, encoder, modality, cache_dir=cache_dir, show_progress_bar=False)
        b_vecs = in_corpus_domain(b_vecs, manifest["anchors"])
        style = None
        if anchor_set.has_views:  # prototypes per concept and a style normaliser, as the build made them
            style, _, b_vecs, _ = fit_views(anchor_set.concepts, b_vecs, np.zeros((len(b_vecs), 1), np.float32))
        where = anchor_set.source
        if len(b_vecs) == int(manifest["anchors"]["count"]) < len(a_vectors):  # the background bank comes last
            bank = stored_bank(manifest, "encode it with the query's encoder", anchor_set.paths, anchor_set.captions)
            b_vecs = np.vstack([b_vecs, encode_anchors(bank, encoder, modality, cache_dir=cache_dir,
                                                       show_progress_bar=False)])
    else:
        raise InputError(f"expected a stitched encoder for the collection's items ({items_modality}) or text, got "
                         f"one for {modality}; pivot modalities keep the encoder they were built with")
    if len(b_vecs) != len(a_vectors):
        raise InputError(f"expected the anchors encoded by {encoder.name!r} to match the collection's "
                         f"{len(a_vectors)} anchors, got {len(b_vecs)}; the anchor files changed since the build")
    projector = fitted(manifest, specs(manifest)[modality], b_vecs, style=style)
    translator = Translator("orthogonal").fit(b_vecs, a_vectors)
    return Stitched(encoder, projector, translator, where)
