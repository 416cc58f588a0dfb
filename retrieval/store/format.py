"""A collection on disk: a self-describing folder, written atomically, verified before it is read.

Format (version 4; documented for users in ``indexes/README.md``). M is the items' modality
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
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pyarrow.parquet as pq

from retrieval.errors import CollectionFormatError, InputError
from retrieval.store.arrow import sha256_file
from retrieval.version import __version__

FORMAT = "retrieval-collection"
# 2: items of any media modality, pivot anchor sets; 3: embeddings in memory-mapped .npy files;
# 4: the manifest checksums its own content; 5: the projector may whiten ("whiten" in its params,
# retrieval/core/whiten.py; absent means off, as in every earlier version); 6: a background anchor
# bank after the anchors ("background", "background_weight" in the projector's params, "background"
# under "anchors"; retrieval/build/background.py; absent means none). 1 to 5 are still read.
FORMAT_VERSION = 6
MANIFEST = "manifest.json"
# Formats whose folders --overwrite may replace: a collection, or a sharded one (retrieval/distributed.py).
OVERWRITABLE_FORMATS = (FORMAT, "retrieval-sharded-collection")
# A scratch folder of a write (``.NAME.tmp-PID-…``) whose process is gone is removed by the next write;
# one named the older way (no process id) once it is this old.
STALE_AFTER_S = 600


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


def _is_ours(folder: Path) -> bool:
    """Whether a folder holds a manifest this project writes (a collection or a sharded one)."""
    try:
        m = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("format") in OVERWRITABLE_FORMATS


def check_output(out, overwrite: bool) -> Path:
    """Refuse an output folder that a build must not write, before any costly work.

    ``out`` may be new, or (with ``overwrite``) a collection this project wrote; never any other
    folder, the working directory or a folder that holds it. Its parent must be writable: that is
    probed by making and removing a folder there, so a read-only place fails now, not after encoding.
    """
    out = Path(out)
    where = Path(os.path.abspath(out))
    cwd = Path(os.getcwd())
    if where == cwd or where in cwd.parents or where.parent == where:
        raise InputError(f"expected an output folder for the collection, got {str(out)!r}, which is the current "
                         f"directory or holds it; name a new folder, e.g. indexes/NAME")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise InputError(f"expected a new output folder, got {str(out)!r}, which exists; pass --overwrite "
                             f"(overwrite=True) to replace it if it is a collection")
        if not out.is_dir():
            raise InputError(f"expected {str(out)!r} to be a collection folder to overwrite, it is a file; "
                             f"nothing was changed")
        if not _is_ours(out):
            n = sum(1 for _ in out.iterdir())
            raise InputError(f"expected --overwrite to replace a collection written by retrieval, got {str(out)!r}, "
                             f"which holds {n} entr{'y' if n == 1 else 'ies'} and no retrieval manifest.json; nothing "
                             f"was deleted. Choose another --out, or remove that folder yourself")
    probe = where.parent
    while not probe.exists():  # the folders a write would create: check the first one that exists
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"expected {str(out)!r} to lie inside folders, but {str(probe)!r} is a file")
    try:
        os.rmdir(_scratch_dir(probe, "write-check", ".tmp-"))
    except OSError as exc:
        raise InputError(f"expected to be able to write the collection {str(out)!r}, but {str(probe)!r} is not "
                         f"writable ({exc.strerror or exc}); choose another --out") from exc
    return out


def _scratch_dir(parent: Path, name: str, tag: str) -> Path:
    """A new folder ``.NAME{tag}PID-RANDOM`` in ``parent``, made with the user's umask (``mkdtemp``
    would make it 0700, and the collection would keep that mode). The process id tells a later
    write whether its writer is still alive (see :func:`clean_stale`)."""
    for _ in range(100):
        path = Path(parent) / f".{name}{tag}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not make a scratch folder in {parent}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _stale(entry: Path, tag: str) -> bool:
    """A scratch folder left by a write whose process died (or, named the older way, an old one)."""
    rest = entry.name.split(tag, 1)[1]
    pid = rest.split("-", 1)[0]
    if "-" in rest and pid.isdigit():
        return int(pid) != os.getpid() and not _alive(int(pid))
    try:
        return time.time() - entry.stat().st_mtime > STALE_AFTER_S
    except OSError:
        return False


def clean_stale(out: Path) -> None:
    """Tidy what an interrupted write of ``out`` left beside it: scratch folders of dead writers are
    removed, and if the write died between its two renames (the old version moved aside, the new
    one not yet in place), the old version is put back."""
    out = Path(os.path.abspath(out))
    parent = out.parent
    if not parent.is_dir():
        return
    for tag in (".tmp-", ".old-"):
        for entry in sorted(parent.glob(f".{out.name}{tag}*")):
            if not entry.is_dir() or not _stale(entry, tag):
                continue
            if tag == ".old-" and not out.exists() and _is_ours(entry):
                os.replace(entry, out)  # the previous version, never replaced: restore it
            else:
                shutil.rmtree(entry, ignore_errors=True)


def write_atomically(out: Path, fill: Callable[[Path], Dict], *, overwrite: bool = False) -> Path:
    """Create ``out`` by letting ``fill(tmp)`` write files into a temporary sibling folder and return
    the manifest; checksums are added, then the folder is renamed into place.

    On any failure the temporary folder is removed and an existing ``out`` is untouched. With
    ``overwrite``, the old folder (which must be a collection: see :func:`check_output`) is moved
    aside first and removed only after the new one is in place.
    """
    out = Path(out)
    clean_stale(out)
    check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _scratch_dir(out.parent, out.name, ".tmp-")
    try:
        manifest = fill(tmp)
        manifest["files"] = {f: {"sha256": sha256_file(str(tmp / f)), "bytes": (tmp / f).stat().st_size}
                             for f in sorted(os.listdir(tmp))}
        write_manifest(tmp / MANIFEST, manifest)
        if out.exists():
            old = _scratch_dir(out.parent, out.name, ".old-")
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
    return manifest


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
