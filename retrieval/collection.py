"""A collection on disk: a self-describing folder, written atomically, verified before it is read.

Format (version 3; documented for users in ``indexes/README.md``). M is the items' modality
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
are still read, and an update rewrites them as version 3. Embeddings moved to ``.npy`` files so
that a collection larger than memory opens without reading them: they are memory-mapped and only
the rows a query touches are paged in.

Nothing in the folder is pickled. Every file is listed with its SHA-256 in the manifest and checked
before use, so a folder that another program wrote, or that was damaged, is refused rather than
half-read.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pyarrow.parquet as pq

from . import __version__
from .arrowio import sha256_file
from .errors import CollectionFormatError, InputError

FORMAT = "retrieval-collection"
# 2: items of any media modality, pivot anchor sets; 3: embeddings in memory-mapped .npy files.
# 1 and 2 are still read.
FORMAT_VERSION = 3
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


def write_atomically(out: Path, fill: Callable[[Path], Dict], *, overwrite: bool = False) -> Path:
    """Create ``out`` by letting ``fill(tmp)`` write files into a temporary sibling folder and return
    the manifest; checksums are added, then the folder is renamed into place.

    On any failure the temporary folder is removed and an existing ``out`` is untouched. With
    ``overwrite``, the old folder is moved aside first and removed only after the new one is in place.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"expected a new output folder, got {str(out)!r}, which exists; "
                         f"pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise InputError(f"expected {str(out)!r} to be a folder, it is a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        manifest = fill(tmp)
        manifest["files"] = {f: {"sha256": sha256_file(str(tmp / f)), "bytes": (tmp / f).stat().st_size}
                             for f in sorted(os.listdir(tmp))}
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2, sort_keys=False)
            fh.write("\n")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rmdir(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


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
    return manifest


def read_parquet(folder: Path, name: str, columns=None):
    return pq.read_table(Path(folder) / name, columns=columns)


def vectors_file(modality: str) -> str:
    return f"{modality}_vectors.npy"


VECTOR_CHUNK = 65536  # rows copied at a time: an update never holds a whole side's embeddings


def write_vectors(folder: Path, modality: str, *parts) -> str:
    """Save one side's embeddings (float32) inside a folder being written; returns the file name.

    Each part is an array (memory-mapped ones included) or ``(array, rows)`` to take only those
    rows; parts are copied in chunks, so an update of a collection larger than memory streams."""
    name = vectors_file(modality)
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


def open_vectors(folder: Path, modality: str, rows: int, dim: int) -> np.ndarray:
    """Memory-map one side's embeddings, read-only (after the manifest was verified); the shape and
    dtype are checked against the tables and the encoder."""
    x = np.load(Path(folder) / vectors_file(modality), mmap_mode="r", allow_pickle=False)
    if x.dtype != np.float32 or x.shape != (rows, dim):
        raise CollectionFormatError(f"expected {vectors_file(modality)} of float32 shape {(rows, dim)}, got "
                                    f"{x.dtype} {x.shape}: the collection is damaged; rebuild it")
    return x
