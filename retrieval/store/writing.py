"""Writing a collection folder: checked before any costly work, filled in a scratch folder beside it,
renamed into place whole, and never over anything but a verified collection of our own.

``--overwrite`` (and every rewrite: add, delete, reanchor, reencode) replaces only a folder whose
manifest verifies against the files beside it and that holds nothing else: replacing deletes the old
folder whole, so a user's file inside it is named and the write refused. A write that dies leaves a
scratch folder that the next write of the same collection tidies (or, between its two renames, the
old version, which is put back).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Callable, Dict

from retrieval.errors import CollectionFormatError, InputError
from retrieval.store.arrow import sha256_file
from retrieval.store.format import FORMAT, MANIFEST, read_manifest, write_manifest
from retrieval.store.sharded import SHARDED_FORMAT, read_sharded_manifest

# Formats whose folders --overwrite may replace: a collection, or a sharded one (retrieval/distributed.py).
OVERWRITABLE_FORMATS = (FORMAT, SHARDED_FORMAT)
# A scratch folder of a write (``.NAME.tmp-PID-…``) whose process is gone is removed by the next write;
# one named the older way (no process id) once it is this old.
STALE_AFTER_S = 600


def owned_entries(folder: Path) -> set:
    """The names in ``folder`` that its own manifest accounts for (``manifest.json`` included), once
    that manifest verifies against the files beside it: our format, its own checksum, every file it
    lists present at its recorded size (a sharded collection: every shard's manifest). A manifest
    copied into a folder of other files, or one edited by hand, raises :class:`CollectionFormatError`."""
    folder = Path(folder)
    try:
        fmt = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError) as exc:
        raise CollectionFormatError(f"expected a retrieval manifest.json in {str(folder)!r}, found none readable "
                                    f"({type(exc).__name__})") from exc
    if fmt == SHARDED_FORMAT:
        return {MANIFEST} | {s["name"] for s in read_sharded_manifest(folder)["shards"]}
    return {MANIFEST} | set(read_manifest(folder, verify=False)["files"])


def _is_ours(folder: Path) -> bool:
    """Whether a folder holds a collection (or a sharded one) whose manifest verifies against its files."""
    try:
        owned_entries(folder)
    except CollectionFormatError:
        return False
    return True


def _check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is a verified collection holding nothing else: a replace
    deletes the old folder whole, so a file the collection did not write would be lost with it."""
    try:
        owned = owned_entries(out)
    except CollectionFormatError as exc:
        n = sum(1 for _ in out.iterdir())
        raise InputError(f"expected --overwrite to replace a collection written by retrieval, got {str(out)!r}, "
                         f"which holds {n} entr{'y' if n == 1 else 'ies'} and no retrieval manifest.json that "
                         f"matches them ({exc}); nothing was deleted. Choose another --out, or remove that "
                         f"folder yourself") from None
    foreign = sorted(e.name for e in out.iterdir() if e.name not in owned)
    if foreign:
        shown = ", ".join(repr(f) for f in foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise InputError(f"expected {str(out)!r} to hold only the collection's own files before it is replaced, "
                         f"but it also holds {shown}, which retrieval did not write; nothing was deleted. Move "
                         f"them out of the collection's folder, then run the command again")


def check_output(out, overwrite: bool) -> Path:
    """Refuse an output folder that a build must not write, before any costly work.

    ``out`` may be new, or (with ``overwrite``) a collection this project wrote whose manifest
    verifies against its files and that holds nothing else (a user's file inside it is named and the
    replace refused: replacing deletes the old folder whole); never any other folder, the working
    directory or a folder that holds it. Its parent must be writable: that is
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
        _check_replaceable(out)
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
