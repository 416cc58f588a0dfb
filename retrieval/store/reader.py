"""Reading a built collection: the one reader that the search facade
(:class:`retrieval.api.collection.Collection`) and the updates (:mod:`retrieval.build.update`) share.

It opens what a folder holds (anchors, fitted projectors, style normaliser, translators, pivot sets,
tables, memory-mapped embeddings, indexes, label vectors) after :func:`read_manifest` verified it;
it loads no encoder and answers no query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.errors import CollectionFormatError, RetrievalError
from retrieval.indexes import ExactIndex, make_index
from retrieval.indexes.heads import Approximate
from retrieval.store.arrow import dense_from_column, sparse_from_columns
from retrieval.store.bridges import load_style, load_translator
from retrieval.store.format import open_vectors, read_manifest, read_parquet, vectors_file
from retrieval.store.mapped import MappedFiles
from retrieval.store.projectors import engine_for, fitted, pivot_spec, specs, style_for


class RowMap:
    """Rows of ``base`` through ``fn``, computed when indexed (``view[ids]``): a derived copy of the
    vectors without holding it."""

    def __init__(self, base, fn):
        self.base, self.fn, self.shape = base, fn, base.shape

    def __getitem__(self, ids):
        return self.fn(self.base[ids])


class _Side:
    """Everything the collection holds for one modality: rows, vectors, relative vectors, index."""

    def __init__(self, modality, meta, abs_vecs, rel, index_spec, folder, stem, dense_spec=None):
        self.modality, self.meta, self.abs = modality, meta, abs_vecs
        self.index = make_index(index_spec).load(str(folder), stem, rel)  # the index holds the relative vectors
        self._abs_index = None
        self._dense = (dense_spec, folder, f"{modality}_absolute")

    def abs_index(self):
        """The absolute route's index: a built FAISS index when the collection has one, else exact."""
        if self._abs_index is None:
            spec, folder, stem = self._dense
            self._abs_index = (make_index(spec).load(str(folder), stem, self.abs) if spec
                               else ExactIndex().add(self.abs))
        return self._abs_index


class StoredCollection:
    """A collection folder, opened read-only. ``modality`` is what the items are (``"image"`` or
    ``"audio"``); texts (corpus and anchor captions) are the other side."""

    def __init__(self, folder: Path, manifest: Dict, *, device: str = "cpu"):
        try:
            self._open(Path(folder), manifest, device)
        except RetrievalError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, EOFError, OSError, RuntimeError, pa.ArrowException) as exc:
            # The manifest verified, so a file that does not read as it says was damaged with its
            # checksum rewritten (or written by something else): refused, never a traceback.
            raise CollectionFormatError(f"expected the collection {str(folder)!r} to read as its manifest describes, "
                                        f"it does not ({type(exc).__name__}: {exc}): it is damaged or was edited "
                                        f"by hand; rebuild it") from exc

    def _open(self, folder: Path, manifest: Dict, device: str) -> None:
        self.folder, self.manifest, self.device = Path(folder), manifest, device
        # every .npy is memory-mapped (embeddings, label vectors, inverted postings): watched from now on
        self.mapped = MappedFiles(self.folder, {n: f["bytes"] for n, f in manifest["files"].items()
                                                if n.endswith(".npy")})
        self.modality: str = manifest["items"]["modality"]
        anchors = read_parquet(self.folder, "anchors.parquet")
        dims = {m: e["dim"] for m, e in manifest["encoders"].items()}
        self.anchor_vectors = {m: dense_from_column(anchors.column(f"{m}_vector"), dims[m])
                               for m in (self.modality, "text")}
        self.anchor_captions = anchors.column("caption").to_pylist()
        # A style normaliser (learned from anchors drawn several ways) applies to the items' modality.
        st = manifest.get("style")
        self.style = load_style(self.folder, st, dims[st["modality"]]) if st else None
        engine = engine_for(device)
        self.projectors = {m: fitted(manifest, spec, self.anchor_vectors[m], style=style_for(manifest, m, self.style),
                                     **engine) for m, spec in specs(manifest).items()}
        # Pivot sets: (projector over the set's own-modality side, the set's text side as the landing space).
        self.pivots: Dict[str, tuple] = {}
        for pv in manifest.get("pivots", []):
            m = pv["modalities"][0]
            table = read_parquet(self.folder, pv["file"])
            own, land = (dense_from_column(table.column(f"{x}_vector"), dims[x]) for x in (m, "text"))
            self.pivots[m] = (fitted(manifest, pivot_spec(manifest, pv), own, **engine), land)
        self.kind = self.projectors[self.modality].kind
        # What is read into memory: the tables' text columns and ids. Embeddings (format 3) are
        # memory-mapped; relative vectors are read only for backends that need them in memory
        # (the inverted index maps its own postings).
        files = manifest["files"]
        self.sides = {}
        tables = {}
        for m, name, stem in ((self.modality, "items.parquet", f"{self.modality}_relative"),
                              ("text", "texts.parquet", "text_relative")):
            spec = manifest["indexes"][stem]
            in_npy = vectors_file(m) in files
            skip = ({"rel_indices", "rel_values"} if spec.get("backend") == "inverted" and self.kind == "asif"
                    else set()) | ({f"{m}_vector"} if in_npy else set())
            cols = [c for c in pq.read_schema(self.folder / name).names if c not in skip]
            table = tables[m] = read_parquet(self.folder, name, columns=cols)
            vecs = (open_vectors(self.folder, m, table.num_rows, dims[m]) if in_npy
                    else dense_from_column(table.column(f"{m}_vector"), dims[m]))
            if self.kind != "asif":
                rel = self.projectors[m].transform(vecs)
            elif "rel_indices" in cols:
                rel = sparse_from_columns(table.column("rel_indices"), table.column("rel_values"), len(self.anchor_captions))
            else:
                rel = vecs  # the inverted index takes only the item count from it
            dense = manifest.get("dense_indexes", {}).get(f"{m}_absolute")
            self.sides[m] = _Side(m, table, vecs, rel, spec, self.folder, stem, dense)
        items, texts = tables[self.modality], tables["text"]
        self.items = {c: items.column(c).to_pylist() for c in ("path", "caption", "label")}
        self.texts = {c: texts.column(c).to_pylist() for c in ("text", "source", "item_id")}
        # Stable ids (ascending; they survive additions and deletions), not row numbers.
        self.item_ids = items.column("id").to_numpy().astype(np.int64)
        self.text_ids = texts.column("id").to_numpy().astype(np.int64)
        self.translators = {}
        for b in manifest.get("bridges", []):
            if b.get("kind") == "translator":
                self.translators[tuple(b["modalities"])] = load_translator(str(self.folder / b["file"]))
        # The label bridge (retrieval/encoders/labels.py): each item as a point in text space, memory-mapped.
        lm = manifest.get("labels")
        self.item_labels = (open_vectors(self.folder, self.modality, len(self.item_ids), int(lm["dim"]), lm["file"])
                            if lm else None)

    def search_approximately(self, setting=True) -> List[str]:
        """Answer dense queries approximately on the sides whose index can (the inverted index with the
        bounded search's rows; :mod:`retrieval.indexes.heads`): ``setting`` True for the defaults, an
        ``Approximate`` or its spec, or None for exact search again. What the search reads is made
        now (about 2 s at a million items), not on the first query. Returns the sides it applies to
        (an inverted index of at least 20,000 items built with the bounded search's rows)."""
        setting = Approximate.of(setting)  # checked even where no side can use it
        return [m for m, side in self.sides.items() if side.index.search_approximately(setting)]

    def check_files(self) -> None:
        """Refuse to go on (:class:`~retrieval.errors.CollectionDamagedError`) if a memory-mapped file
        was cut short on disk since opening: reading it would kill the process (see ``mapped.py``)."""
        self.mapped.check()

    @classmethod
    def read(cls, folder, *, device: str = "cpu", verify: bool = True) -> "StoredCollection":
        """Verify the manifest (and every file's checksum unless ``verify=False``), then open."""
        return cls(Path(folder), read_manifest(Path(folder), verify=verify), device=device)
