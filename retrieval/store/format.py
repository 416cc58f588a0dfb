"""A collection on disk: a self-describing folder, verified before it is read (written by ``writing.py``).

Format (version 6; documented for users in ``indexes/README.md``). M is the items' modality
(``image`` or ``audio``, ``manifest["items"]["modality"]``; version 1 collections are all image)::

    NAME/
      manifest.json     what built it: encoders, anchors hash, projector, indexes, counts, checksums
      items.parquet     id, path, caption, label, rel_indices, rel_values
      M_vectors.npy     the items' embeddings, float32, one row per items.parquet row (memory-mapped)
      texts.parquet     id, text, source (corpus|anchor), item_id, rel_indices, rel_values
      text_vectors.npy  the texts' embeddings, float32, one row per texts.parquet row (memory-mapped)
      anchors.parquet   M, caption, M_vector, text_vector
      anchors-P.parquet pivot anchor sets linking another modality P with text (P, caption, P_vector, text_vector)
      translator-*.parquet  fitted translators between text and M
      *.faiss           FAISS index files, when an index uses the faiss backend

Versions 1 and 2 kept the embeddings in the tables (``M_vector``, ``text_vector`` columns); they
are still read, and an update rewrites them as version 4. Version 4 adds ``manifest_sha256``, a
checksum of the manifest's own content, so that a hand-edited manifest (a changed ``p``, a changed
count) is refused like a damaged file; versions 1 to 3 are read without it. Embeddings moved to ``.npy`` files so
that a collection larger than memory opens without reading them: they are memory-mapped and only
the rows a query touches are paged in.

Nothing in the folder is pickled. Every file is listed with its SHA-256 in the manifest and checked
before use, so a folder that another program wrote, or that was damaged, is refused rather than
half-read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Dict

import numpy as np
import pyarrow.parquet as pq

from retrieval.core.projector import projector_from_spec
from retrieval.errors import CollectionFormatError, InputError, RetrievalError
from retrieval.store.arrow import sha256_file
from retrieval.version import __version__

FORMAT = "retrieval-collection"
# 2: items of any media modality, pivot anchor sets; 3: embeddings in memory-mapped .npy files;
# 4: the manifest checksums its own content; 5: the projector may whiten ("whiten" in its params,
# retrieval/core/whiten.py; absent means off, as in every earlier version); 6: a background anchor
# bank after the anchors ("background", "background_weight" in the projector's params, "background"
# under "anchors"; retrieval/build/background.py; absent means none); 7: each modality's projector as the
# list of its steps ("projectors", retrieval/core/step.py) and each pivot set's under its entry, instead of
# flat parameters (retrieval/store/projectors.py reads both). 1 to 6 are still read.
FORMAT_VERSION = 7
MANIFEST = "manifest.json"


def library_versions() -> Dict[str, str]:
    out = {"python": platform.python_version(), "retrieval": __version__}
    for mod in ("numpy", "torch", "faiss", "pyarrow", "transformers"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional library is simply not recorded
            pass
    return out


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def manifest_checksum(manifest: Dict) -> str:
    """SHA-256 of a manifest's content (every key but the checksum itself), in a canonical JSON form."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
                          .encode("utf-8")).hexdigest()


def write_manifest(path: Path, manifest: Dict) -> None:
    """Write ``manifest`` with its own checksum (``manifest_sha256``) through a temporary file."""
    manifest = json.loads(json.dumps(manifest))  # the checksum is of what a reader will load
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
    os.replace(tmp, path)


def read_manifest(folder: Path, *, verify: bool = True) -> Dict:
    """Load and check a manifest: our format, a version we read, every file present and unchanged."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"expected a collection folder, got {str(folder)!r}, which "
                         f"{'is a file' if folder.exists() else 'does not exist'}")
    path = folder / MANIFEST
    if not path.is_file():
        raise CollectionFormatError(f"expected {str(path)!r}: {str(folder)!r} is not a collection built by retrieval "
                                    f"(no manifest.json); build one with 'retrieval build'")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CollectionFormatError(f"expected JSON in {str(path)!r}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CollectionFormatError(f"expected format {FORMAT!r} in {str(path)!r}, got {got!r}: "
                                    f"this folder was written by something else")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CollectionFormatError(f"expected format_version 1..{FORMAT_VERSION} in {str(path)!r}, got {version!r}; "
                                    f"it was written by a newer retrieval ({manifest.get('versions', {}).get('retrieval', '?')}), "
                                    f"upgrade this package or rebuild the collection")
    if version >= 4 or "manifest_sha256" in manifest:
        if manifest.get("manifest_sha256") != manifest_checksum(manifest):
            raise CollectionFormatError(f"expected the manifest {str(path)!r} to match its own checksum "
                                        f"(manifest_sha256), it does not: it was edited or damaged after the "
                                        f"collection was written; rebuild the collection")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CollectionFormatError(f"expected a 'files' table with checksums in {str(path)!r}, got {files!r}")
    for name, meta in files.items():
        f = folder / name
        if os.path.basename(name) != name or not f.is_file():
            raise CollectionFormatError(f"expected file {name!r} listed in the manifest inside {str(folder)!r}, it is missing")
        if f.stat().st_size != meta.get("bytes"):
            raise CollectionFormatError(f"expected {name!r} to be {meta.get('bytes')} bytes, got {f.stat().st_size}: "
                                        f"the collection is damaged or was modified; rebuild it")
        if verify and sha256_file(str(f)) != meta.get("sha256"):
            raise CollectionFormatError(f"checksum of {name!r} does not match the manifest: the collection is "
                                        f"damaged or was modified; rebuild it")
    # Version 1 collections hold images and one image-text anchor set: say so in version 2 terms.
    manifest.setdefault("items", {"modality": "image"})
    manifest.setdefault("pivots", [])
    check_schema(manifest, path)
    if verify:
        for name in files:
            if name.endswith(".npy"):
                check_finite(folder, name)
    return manifest


def _fail(path: Path, what: str, got) -> CollectionFormatError:
    return CollectionFormatError(f"expected the manifest {str(path)!r} to give {what}, got {got!r}: it was edited "
                                 f"or damaged after the collection was written; rebuild the collection")


def check_schema(manifest: Dict, path: Path) -> None:
    """The keys every reader relies on, with the types it relies on: a manifest whose checksum was
    rewritten after an edit is refused here, by name, rather than failing somewhere inside a reader."""
    items = manifest.get("items")
    modality = items.get("modality") if isinstance(items, dict) else None
    if modality not in ("image", "audio"):
        raise _fail(path, "the items' modality ('image' or 'audio') under 'items'", items)
    encoders = manifest.get("encoders")
    if not isinstance(encoders, dict) or not {modality, "text"} <= set(encoders):
        raise _fail(path, f"'encoders' for {modality!r} and 'text'", encoders)
    for m, e in encoders.items():
        if not (isinstance(e, dict) and isinstance(e.get("spec"), str) and type(e.get("dim")) is int and e["dim"] > 0):
            raise _fail(path, f"the {m} encoder as {{'spec': NAME, 'dim': WIDTH}}", e)
    _check_projectors(manifest, path, modality)
    indexes = manifest.get("indexes")
    for stem in (f"{modality}_relative", "text_relative"):
        spec = indexes.get(stem) if isinstance(indexes, dict) else None
        if not (isinstance(spec, dict) and isinstance(spec.get("backend"), str)):
            raise _fail(path, f"an index {stem!r} with its 'backend' under 'indexes'", indexes)
    anchors = manifest.get("anchors")
    if not (isinstance(anchors, dict) and type(anchors.get("count")) is int):
        raise _fail(path, "'anchors' with their 'count'", anchors)


def _check_projectors(manifest: Dict, path: Path, modality: str) -> None:
    if "projectors" in manifest:
        pr = manifest["projectors"]
        if not (isinstance(pr, dict) and set(pr) == {modality, "text"}):
            raise _fail(path, f"'projectors' for {modality!r} and 'text'", pr)
        for spec in pr.values():
            try:
                projector_from_spec(spec)
            except RetrievalError as exc:
                raise _fail(path, f"projector steps that can be rebuilt ({exc})", spec) from None
        return
    pr = manifest.get("projector")
    if not (isinstance(pr, dict) and pr.get("kind") in ("asif", "cosine") and type(pr.get("k")) is int
            and pr["k"] > 0 and isinstance(pr.get("p"), (int, float)) and pr["p"] > 0):
        raise _fail(path, "a 'projector' with kind 'asif' or 'cosine', k >= 1 and p > 0", pr)


def check_finite(folder: Path, name: str) -> None:
    """Refuse a vectors file that is not a plain numeric array, or that holds NaN or infinity (every
    score against such a row is NaN: it would answer with nothing, silently)."""
    try:
        x = np.load(Path(folder) / name, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError, OSError) as exc:
        raise CollectionFormatError(f"expected {name!r} in {str(folder)!r} to be a numeric .npy array, it does not "
                                    f"read as one ({exc}): the collection is damaged; rebuild it") from exc
    if x.dtype.kind != "f":
        return  # ids and offsets of an inverted index: integers, finite by type
    for i in range(0, len(x), VECTOR_CHUNK):
        bad = ~np.isfinite(np.asarray(x[i:i + VECTOR_CHUNK]))
        if bad.any():
            row = i + int(np.argwhere(bad)[0][0])
            raise CollectionFormatError(f"expected finite numbers in {name!r} in {str(folder)!r}, got NaN or infinity "
                                        f"(row {row} first): the collection is damaged; rebuild it")


def read_parquet(folder: Path, name: str, columns=None):
    return pq.read_table(Path(folder) / name, columns=columns)


def vectors_file(modality: str) -> str:
    return f"{modality}_vectors.npy"


VECTOR_CHUNK = 65536  # rows copied at a time: an update never holds a whole side's embeddings


def labels_file(modality: str) -> str:
    """The items' label vectors (retrieval/encoders/labels.py): text-space points, one row per item."""
    return f"{modality}_labels.npy"


def write_vectors(folder: Path, modality: str, *parts, name: str = "") -> str:
    """Save one side's embeddings (float32) inside a folder being written; returns the file name
    (``name``, default :func:`vectors_file`).

    Each part is an array (memory-mapped ones included) or ``(array, rows)`` to take only those
    rows; parts are copied in chunks, so an update of a collection larger than memory streams."""
    name = name or vectors_file(modality)
    parts = [p if isinstance(p, tuple) else (p, None) for p in parts]
    dims = {int(a.shape[1]) for a, _ in parts}
    if len(dims) != 1:
        raise InputError(f"expected embeddings of one width for {modality}, got widths {sorted(dims)}")
    total = sum(len(a) if r is None else len(r) for a, r in parts)
    out = np.lib.format.open_memmap(Path(folder) / name, mode="w+", dtype=np.float32, shape=(total, dims.pop()))
    at = 0
    for a, rows in parts:
        n = len(a) if rows is None else len(rows)
        for i in range(0, n, VECTOR_CHUNK):
            block = a[i:i + VECTOR_CHUNK] if rows is None else a[np.asarray(rows[i:i + VECTOR_CHUNK])]
            out[at:at + len(block)] = block
            at += len(block)
    out.flush()
    del out
    return name


def open_vectors(folder: Path, modality: str, rows: int, dim: int, name: str = "") -> np.ndarray:
    """Memory-map one side's embeddings (or the file ``name``), read-only (after the manifest was
    verified); the shape and dtype are checked against the tables and the encoder."""
    name = name or vectors_file(modality)
    x = np.load(Path(folder) / name, mmap_mode="r", allow_pickle=False)
    if x.dtype != np.float32 or x.shape != (rows, dim):
        raise CollectionFormatError(f"expected {name} of float32 shape {(rows, dim)}, got "
                                    f"{x.dtype} {x.shape}: the collection is damaged; rebuild it")
    return x
