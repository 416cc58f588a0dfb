"""Building a collection: read corpus and anchors, encode, relativise, index, write atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from .anchors import AnchorSet, encode_anchors, load_anchor_set
from .arrowio import dense_column, sparse_columns, write_parquet_atomic
from .collection import FORMAT, FORMAT_VERSION, library_versions, now_iso, write_atomically
from .encoders import DEFAULT_ENCODERS, load_encoder
from .errors import InputError
from .images import load_rgb
from .index import make_index
from .progress import progress
from .relative import RelativeProjector
from .tables import rows_from
from .translation import Translator, save_translator

log = logging.getLogger(__name__)

# Chosen by 4-fold validation on the anchor concepts of the emoji-xstyle suite, averaging the seen and
# unseen regimes (never the test queries); see results/emoji-xstyle/README.md. With fewer anchors than
# DEFAULT_K, an unspecified k becomes the number of anchors.
DEFAULT_K = 256
DEFAULT_P = 4.0
DEFAULT_CENTER = True
MAX_SKIPPED_LISTED = 100


def parse_index_spec(spec: str) -> Dict:
    """``"exact"``, ``"faiss"`` (Flat) or ``"faiss:FACTORY"`` such as ``"faiss:HNSW32"``."""
    name, _, factory = (spec or "").partition(":")
    if name == "exact" and not factory:
        return {"backend": "exact"}
    if name == "faiss":
        return {"backend": "faiss", "factory": factory or "Flat"}
    raise InputError(f"expected an index spec 'exact', 'faiss' or 'faiss:FACTORY' (e.g. faiss:HNSW32), got {spec!r}")


def readable_images(rows: List[Dict], show_progress_bar: Optional[bool]) -> Tuple[List[Dict], List[Dict]]:
    """Split corpus rows into decodable images and skipped ones (with the reason), never stopping mid-way."""
    ok, skipped = [], []
    for row in progress(rows, total=len(rows), desc="check images", show=show_progress_bar):
        try:
            load_rgb(row["image"])
            ok.append(row)
        except InputError as exc:
            skipped.append({"path": row["image"], "reason": str(exc)})
    return ok, skipped


def build_collection(corpus, anchors, out, *, image_encoder: str = DEFAULT_ENCODERS["image"],
                     text_encoder: str = DEFAULT_ENCODERS["text"], k: Optional[int] = None, p: float = DEFAULT_P,
                     kind: str = "asif", center: bool = DEFAULT_CENTER, index: str = "exact", overwrite: bool = False,
                     cache_dir: Optional[str] = None, batch_size: int = 32,
                     show_progress_bar: Optional[bool] = None, device: str = "cpu") -> Path:
    """Build a collection folder from a corpus of images and a parallel anchor set; return its path.

    Corrupt or unreadable corpus images are skipped, counted and named in the manifest
    (``skipped``); anchor problems are errors, because a dropped anchor would break the pairing.

    >>> build_collection("corpus/", "anchors.parquet", "indexes/demo")  # doctest: +SKIP
    PosixPath('indexes/demo')
    """
    out = Path(out)
    if out.exists() and not overwrite:  # fail before minutes of encoding, not after
        raise InputError(f"expected a new output folder, got {str(out)!r}, which exists; pass --overwrite to replace it")
    index_spec = parse_index_spec(index)
    anchor_set = anchors if isinstance(anchors, AnchorSet) else load_anchor_set(anchors)
    k = min(DEFAULT_K, len(anchor_set)) if k is None else k
    RelativeProjector(k=k, p=p, kind=kind, center=center).check_params(len(anchor_set))
    rows = rows_from(corpus, caption_required=False, what="corpus")
    rows, skipped = readable_images(rows, show_progress_bar)
    if skipped:
        log.warning("skipping %d unreadable corpus image(s), e.g. %s", len(skipped), skipped[0]["path"])
    if not rows:
        raise InputError(f"expected at least one readable image in the corpus {str(corpus)!r}, "
                         f"all {len(skipped)} failed, e.g. {skipped[0]['reason']}")

    img_enc = load_encoder(image_encoder, "image", device=device)
    txt_enc = load_encoder(text_encoder, "text", device=device)
    enc_kw = dict(cache_dir=cache_dir, batch_size=batch_size, show_progress_bar=show_progress_bar)
    log.info("encoding %d anchor pairs (cached by content hash)", len(anchor_set))
    a_img = encode_anchors(anchor_set, img_enc, "image", **enc_kw)
    a_txt = encode_anchors(anchor_set, txt_enc, "text", **enc_kw)

    log.info("encoding %d corpus images", len(rows))
    item_vecs = img_enc.encode([r["image"] for r in rows], batch_size=batch_size, show_progress_bar=show_progress_bar)
    captioned = [i for i, r in enumerate(rows) if r["caption"] and r["caption"].strip()]
    cap_vecs = txt_enc.encode([rows[i]["caption"] for i in captioned], batch_size=batch_size,
                              show_progress_bar=show_progress_bar)
    text_vecs = np.vstack([cap_vecs, a_txt]) if len(captioned) else a_txt
    texts = [rows[i]["caption"] for i in captioned] + list(anchor_set.captions)
    text_source = ["corpus"] * len(captioned) + ["anchor"] * len(anchor_set)
    text_item = captioned + [-1] * len(anchor_set)

    log.info("relativising (k=%d, p=%g, centred=%s) and writing %s", k, p, center, out)
    img_proj = RelativeProjector(k=k, p=p, kind=kind, center=center).fit(a_img)
    txt_proj = RelativeProjector(k=k, p=p, kind=kind, center=center).fit(a_txt)
    item_rel, text_rel = img_proj.transform(item_vecs), txt_proj.transform(text_vecs)

    def fill(tmp: Path) -> Dict:
        items = {"id": pa.array(np.arange(len(rows)), pa.int64()),
                 "path": pa.array([r["image"] for r in rows], pa.string()),
                 "caption": pa.array([r["caption"] for r in rows], pa.string()),
                 "label": pa.array([r["label"] for r in rows], pa.string()),
                 "image_vector": dense_column(item_vecs)}
        text_cols = {"id": pa.array(np.arange(len(texts)), pa.int64()), "text": pa.array(texts, pa.string()),
                     "source": pa.array(text_source, pa.string()), "item_id": pa.array(text_item, pa.int64()),
                     "text_vector": dense_column(text_vecs)}
        indexes = {}
        for stem, cols, rel in (("image_relative", items, item_rel), ("text_relative", text_cols, text_rel)):
            if kind == "asif":
                cols["rel_indices"], cols["rel_values"] = sparse_columns(rel)
            idx = make_index(index_spec).add(rel)
            indexes[stem] = dict(idx.spec(), files=idx.save(str(tmp), stem))
        # Direct translators both ways, fitted on the same anchors: the planner's translation route.
        bridges = [{"kind": "anchors", "modalities": ["image", "text"], "name": anchor_set.source}]
        for src, dst, xs, ys in (("text", "image", a_txt, a_img), ("image", "text", a_img, a_txt)):
            fname = f"translator-{src}-{dst}.parquet"
            save_translator(Translator("orthogonal").fit(xs, ys), str(tmp / fname))
            bridges.append({"kind": "translator", "modalities": [src, dst], "name": "orthogonal", "file": fname})
        write_parquet_atomic(pa.table(items), str(tmp / "items.parquet"))
        write_parquet_atomic(pa.table(text_cols), str(tmp / "texts.parquet"))
        write_parquet_atomic(pa.table({"image": pa.array(anchor_set.images, pa.string()),
                                       "caption": pa.array(anchor_set.captions, pa.string()),
                                       "image_vector": dense_column(a_img), "text_vector": dense_column(a_txt)}),
                             str(tmp / "anchors.parquet"))
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": now_iso(), "versions": library_versions(),
            "encoders": {"image": {"spec": img_enc.name, "dim": img_enc.dim},
                         "text": {"spec": txt_enc.name, "dim": txt_enc.dim}},
            "anchors": {"source": anchor_set.source, "content_hash": anchor_set.content_hash, "count": len(anchor_set)},
            "projector": img_proj.get_params(),
            "corpus": {"source": str(corpus)},
            "indexes": indexes,
            "bridges": bridges,
            "counts": {"items": len(rows), "texts": len(texts), "corpus_captions": len(captioned),
                       "anchors": len(anchor_set), "skipped": len(skipped)},
            "skipped": skipped[:MAX_SKIPPED_LISTED],
        }

    return write_atomically(out, fill, overwrite=overwrite)
