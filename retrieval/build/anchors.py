"""Parallel anchor sets (media file, caption) and their cached encodings.

An anchor set is the bridge between two modalities: row i of the media side (images or sounds) and
row i of the text side describe the same thing. Encoding it is the slowest part of a build, so each encoder's
vectors are cached as Parquet under a key made of the set's content hash and the encoder spec.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.core.style import DEFAULT_LAMBDA, fit_views
from retrieval.encoders.base import Encoder
from retrieval.errors import InputError, RetrievalError
from retrieval.media.tables import rows_from
from retrieval.store.arrow import dense_column, dense_from_column, sha256_file, write_parquet_atomic
from retrieval.store.cache import default_cache_dir

CACHE_VERSION = "1"


@dataclass
class AnchorSet:
    """Parallel anchors: ``paths[i]`` (an image or a sound) and ``captions[i]`` show the same concept."""

    paths: List[str]
    captions: List[str]
    source: str = ""
    content_hash: str = field(default="")
    modality: str = "image"
    # concepts[i] names what row i shows; rows sharing a concept are views of one anchor, merged at
    # build time (retrieval/core/style.py). None, or no concept repeated: every row is its own anchor.
    concepts: Optional[List[str]] = None
    # Embeddings brought with the table (retrieval/encoders/vectors.py): modality -> (n, d) rows, for a
    # side whose encoder is vectors:NAME. A set with its media side's vectors needs no files.
    vectors: Optional[Dict[str, np.ndarray]] = None

    def __post_init__(self):
        if self.modality not in ("image", "audio"):
            raise InputError(f"expected anchors of modality 'image' or 'audio' (paired with text), got {self.modality!r}")
        if len(self.paths) != len(self.captions):
            raise InputError(f"expected as many anchor captions as {self.modality} files, got {len(self.captions)} "
                             f"captions for {len(self.paths)} files")
        if not self.paths:
            raise InputError(f"expected at least one anchor pair in {self.source or 'the anchor set'}, got none")
        empty = [i for i, c in enumerate(self.captions) if c is None or not str(c).strip()]
        if empty:
            shown = ", ".join(f"row {i} ({Path(self.paths[i]).name})" for i in empty[:5])
            raise InputError(f"expected a non-empty caption for every anchor, got {len(empty)} empty: {shown}"
                             f"{' …' if len(empty) > 5 else ''}")
        if self.vectors:
            from retrieval.encoders.vectors import check_vectors

            self.vectors = {m: check_vectors(v, what=f"{m} vectors of {self.source or 'the anchor set'}")
                            for m, v in self.vectors.items()}
        missing = [] if self.modality in (self.vectors or {}) else [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise InputError(f"expected every anchor {self.modality} file to exist, got {len(missing)} missing, "
                             f"e.g. {missing[0]!r}")
        if self.concepts is not None:
            if len(self.concepts) != len(self.paths) or any(c is None or not str(c).strip() for c in self.concepts):
                raise InputError(f"expected a concept for every anchor row or for none, got "
                                 f"{sum(c is not None and bool(str(c).strip()) for c in self.concepts)} of "
                                 f"{len(self.paths)} rows with one in {self.source or 'the anchor set'}")
            if len(set(self.concepts)) == len(self.concepts):
                self.concepts = None  # nothing to merge: the same set (and hash) as without the column
        if not self.content_hash:
            self.content_hash = self._hash()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def modalities(self):
        """The two modalities this set links, media first: ``("image", "text")`` or ``("audio", "text")``."""
        return (self.modality, "text")

    def _hash(self) -> str:
        # Content, not paths: moving the folder keeps the cache; editing a caption or a pixel does not.
        # Image sets keep the original prefix so caches and manifests written before audio stay valid.
        h = hashlib.sha256(b"anchors-v1\n" if self.modality == "image" else f"anchors-v1-{self.modality}\n".encode())
        brought = self.vectors or {}
        for i, (img, cap) in enumerate(zip(self.paths, self.captions)):
            if self.modality in brought:  # the vectors are the content (and only sets with them hash so)
                h.update(b"vector\t" + hashlib.sha256(brought[self.modality][i].tobytes()).hexdigest().encode())
            else:
                h.update(sha256_file(img).encode())
            if "text" in brought:
                h.update(b"text-vector\t" + hashlib.sha256(brought["text"][i].tobytes()).hexdigest().encode())
            h.update(b"\t" + cap.strip().encode("utf-8") + b"\n")
            if self.concepts is not None:  # only sets with views: older hashes stay valid
                h.update(b"concept\t" + str(self.concepts[i]).encode("utf-8") + b"\n")
        return h.hexdigest()

    def subset(self, rows, *, content_hash: str = "") -> "AnchorSet":
        """The set of ``rows`` (in that order), its brought vectors with them."""
        rows = list(rows)
        return AnchorSet([self.paths[i] for i in rows], [self.captions[i] for i in rows], source=self.source,
                         content_hash=content_hash, modality=self.modality,
                         vectors={m: v[rows] for m, v in self.vectors.items()} if self.vectors else None)

    @property
    def n_anchors(self) -> int:
        """Anchors a build makes of this set: one per concept when views are merged, else one per row."""
        return len(set(self.concepts)) if self.concepts is not None else len(self.paths)

    @property
    def has_views(self) -> bool:
        """Whether some concept has more than one row (then rows are merged at build time)."""
        return self.concepts is not None


def load_anchor_set(sources, modality: Optional[str] = None, show_progress_bar: Optional[bool] = None) -> AnchorSet:
    """Read anchors from a Parquet/CSV/Arrow table (an image or audio column + a caption column), a
    folder of images or sounds with sidecar .txt captions, a pack (``pack:NAME``) or a dataset
    (``hf:NAME``, or a folder saved with ``save_to_disk``): retrieval/build/sources.py. Several
    sources (a list) are one set, their rows one after another.

    >>> anchors = load_anchor_set("data/anchors.parquet")  # doctest: +SKIP
    >>> anchors = load_anchor_set(["data/anchors.csv", "pack:tuxpaint"])  # doctest: +SKIP
    """
    from retrieval.build.sources import SEPARATOR, local_table, split_sources

    names = split_sources(sources)
    sets = [read_anchor_table(local_table(s, show_progress_bar), modality, source=s) for s in names]
    return sets[0] if len(sets) == 1 else concatenated(sets, SEPARATOR.join(names))


def read_anchor_table(path, modality: Optional[str] = None, *, source: Optional[str] = None) -> AnchorSet:
    """One local table or folder of anchors; ``source`` is what the user named (default: ``path``)."""
    modality, rows = rows_from(path, caption_required=True, what="anchor", modality=modality)
    concepts = [r.get("concept") for r in rows]
    brought = rows[0].get("vectors", {}) if rows else {}
    vectors = {m: [r["vectors"][m] for r in rows] for m in brought} if brought else None
    return AnchorSet([r["path"] for r in rows], [r["caption"] for r in rows], source=source or str(path),
                     modality=modality, concepts=None if all(c is None for c in concepts) else concepts,
                     vectors=vectors)


def concatenated(sets: List[AnchorSet], source: str) -> AnchorSet:
    """Several anchor sets as one, rows in order; they must pair the same modality with text and
    bring the same vectors. A row without a concept stays its own anchor."""
    kinds = {(s.modality, tuple(sorted(s.vectors or {}))) for s in sets}
    if len(kinds) > 1:
        shown = ", ".join(f"{s.source!r}: {s.modality}" + (f" with {sorted(s.vectors)} vectors" if s.vectors else "")
                          for s in sets)
        raise InputError(f"expected anchor sources of one modality bringing the same vectors, got {shown}")
    concepts = None
    if any(s.concepts for s in sets):
        concepts = [c if c is not None else f"{s.source}#{i}" for s in sets  # its own: a name no other row has
                    for i, c in enumerate(s.concepts or [None] * len(s))]
    vectors = {m: np.concatenate([s.vectors[m] for s in sets]) for m in sets[0].vectors} if sets[0].vectors else None
    return AnchorSet([p for s in sets for p in s.paths], [c for s in sets for c in s.captions], source=source,
                     modality=sets[0].modality, concepts=concepts, vectors=vectors)


def _cache_key(anchors: AnchorSet, encoder: Encoder, modality: str) -> str:
    raw = f"{CACHE_VERSION}|{anchors.content_hash}|{modality}|{encoder.name}|{encoder.dim}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def encode_anchors(anchors: AnchorSet, encoder: Encoder, modality: str, *, cache_dir: Optional[str] = None,
                   batch_size: int = 32, show_progress_bar: Optional[bool] = None) -> np.ndarray:
    """Vectors of one side of the anchor set, from the cache when this set and encoder were seen before.

    ``cache_dir=""`` disables the cache.
    """
    if modality not in anchors.modalities:
        raise InputError(f"expected a modality of this anchor set {list(anchors.modalities)}, got {modality!r}")
    from retrieval.encoders.vectors import is_vectors

    if is_vectors(encoder.name):  # brought with the table: checked when the set was made, nothing to cache
        if modality not in (anchors.vectors or {}):
            column = "text_embedding" if modality == "text" else f"{modality}_embedding"
            raise InputError(f"expected {modality} vectors in the anchor set {anchors.source!r} for the "
                             f"{encoder.name!r} side (a {column!r} column), got none")
        return encoder.encode(anchors.vectors[modality])
    if modality != "text" and modality in (anchors.vectors or {}) and not os.path.isfile(anchors.paths[0]):
        raise InputError(f"expected {modality} files for the model encoder {encoder.name!r}, got an anchor set of "
                         f"{modality} vectors ({anchors.source!r}); use --{modality}-encoder vectors:NAME")
    inputs = anchors.captions if modality == "text" else anchors.paths
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    key = _cache_key(anchors, encoder, modality)
    path = os.path.join(cache_dir, f"anchors-{key}.parquet") if cache_dir else None
    if path and os.path.isfile(path):
        cached = _read_cache(path, key, len(inputs), encoder.dim)
        if cached is not None:
            return cached
    vecs = encoder.encode(inputs, batch_size=batch_size, show_progress_bar=show_progress_bar)
    if path:
        table = pa.table({"vector": dense_column(vecs)})
        write_parquet_atomic(table, path, {"retrieval.cache_key": key, "retrieval.encoder": encoder.name,
                                           "retrieval.modality": modality})
    return vecs


def encode_anchor_labels(anchors: AnchorSet, encoder: Encoder, label_cfg: Dict, *, cache_dir: Optional[str] = None,
                         batch_size: int = 32, show_progress_bar: Optional[bool] = None) -> np.ndarray:
    """The anchor pictures' label vectors (retrieval/encoders/labels.py): each as the point in text
    space its network's classifier head names, as a build stores them for its items. ``build --tune``
    weighs the label bridge with them. Cached like the anchors' vectors (``cache_dir=""``: not)."""
    from retrieval.encoders.labels import label_vectors

    classes = np.ascontiguousarray(label_cfg["classes"], np.float32)
    raw = f"{_cache_key(anchors, encoder, 'labels')}|{label_cfg['temperature']}|".encode() + classes.tobytes()
    key = hashlib.sha256(raw).hexdigest()[:32]
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    path = os.path.join(cache_dir, f"anchor-labels-{key}.parquet") if cache_dir else None
    if path and os.path.isfile(path):
        cached = _read_cache(path, key, len(anchors), classes.shape[1])
        if cached is not None:
            return cached
    _, logits = encoder.encode_labelled(anchors.paths, batch_size=batch_size, show_progress_bar=show_progress_bar)
    vecs = label_vectors(logits, classes, label_cfg["temperature"])
    if path:
        write_parquet_atomic(pa.table({"vector": dense_column(vecs)}), path, {"retrieval.cache_key": key})
    return vecs


def _read_cache(path: str, key: str, n: int, dim: int) -> Optional[np.ndarray]:
    try:
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(b"retrieval.cache_key", b"").decode() != key or table.num_rows != n:
            raise ValueError("key or row count differs")
        return dense_from_column(table.column("vector"), dim)
    except Exception as exc:  # a damaged cache entry is re-encoded, never trusted
        warnings.warn(f"ignoring unusable anchor cache {path}: {exc}")
        return None


def prepare_views(anchor_set, media: np.ndarray, text: np.ndarray, lam: float = DEFAULT_LAMBDA):
    """(anchor set with one row per concept, media prototypes, text prototypes, StyleNormaliser or
    None) from an anchor set and its encoded rows. A set without views comes back unchanged."""
    if not anchor_set.has_views:
        return anchor_set, media, text, None
    style, rows, med, txt = fit_views(anchor_set.concepts, media, text, lam)
    merged = anchor_set.subset(rows, content_hash=anchor_set.content_hash)
    return merged, med, txt, style


def stored_anchor_set(folder: Path, manifest: Dict, modality: str, purpose: str, *, original: bool = True) -> AnchorSet:
    """A built collection's anchors with readable files, to encode them with another encoder: the
    original table (views kept) when it is there and unchanged (and ``original``), else the rows the
    collection stores (``anchors.parquet``). Refused, naming what is missing and ``purpose``, otherwise."""
    source, want = manifest["anchors"].get("source", ""), manifest["anchors"].get("content_hash", "")
    if original and source and os.path.isfile(source):
        try:
            original = load_anchor_set(source, modality)
            if original.content_hash == want:
                return original
        except RetrievalError:
            pass
    table = pq.read_table(Path(folder) / "anchors.parquet", columns=[modality, "caption"])
    paths = table.column(modality).to_pylist()
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"expected the anchors' {modality} files to {purpose}, but "
                         f"{len(missing)} of {len(paths)} are missing (e.g. {missing[0]!r}) and the anchor table "
                         f"{source!r} is gone or changed; restore the files, or rebuild the collection with that "
                         f"encoder")
    return AnchorSet(paths, table.column("caption").to_pylist(), source=str(folder / "anchors.parquet"),
                     modality=modality)
