"""Anchor pairs from a Hugging Face ``datasets`` dataset: the field's usual way to ship image–caption
(and sound–caption) pairs.

``hf:NAME[:SPLIT][#image=COL,caption=COL,rows=N]`` streams from the hub (rows are read as they
arrive, so ``rows=N`` takes the first N pairs of a large set without downloading the rest; offline,
a clear error says to save it with ``save_to_disk``); ``hf:FOLDER`` of data files (Parquet, CSV, JSON
that ``datasets`` reads) streams the same way; ``hf:FOLDER`` or a plain ``FOLDER`` saved with
``save_to_disk`` is read from disk. The pairs are written once as files and a table in the cache
(``$RETRIEVAL_CACHE/datasets/KEY``; KEY from a saved dataset's fingerprint, a data folder's files
(names, sizes, times) or a hub name, with the split, columns and rows; written to a temporary folder
and renamed), so an anchor set from a dataset is an anchor table like any other: its content hash,
cached encodings and manifest behave the same. A hub dataset is cached by its name: delete its
folder to read a newer version. Media are kept as the dataset holds them (the original bytes),
never decoded and re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

from retrieval.errors import InputError

PREFIX = "hf:"
CAPTION_COLUMNS = ("caption", "text", "title", "sentence", "captions", "label_text")
MEDIA_COLUMNS = {"image": ("image", "img", "picture", "jpg", "png"), "audio": ("audio", "sound", "wav", "flac")}
SIGNATURES = ((b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"RIFF", ".wav"), (b"fLaC", ".flac"),
              (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def is_saved_dataset(path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (or a DatasetDict's)."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("state.json", "dataset_dict.json"))


def parse(spec: str) -> Tuple[str, Optional[str], Dict[str, str]]:
    """``hf:NAME:SPLIT#image=img,caption=text,rows=500`` -> (NAME, SPLIT, {role: column, "rows": "500"})."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    body, _, mapping = body.partition("#")
    columns = {}
    for part in filter(None, mapping.split(",")):
        role, eq, col = part.partition("=")
        if not eq or role.strip() not in ("image", "audio", "caption", "rows") or not col.strip():
            raise InputError(f"expected a column mapping such as '#image=img,caption=text,rows=1000' (roles image, "
                             f"audio, caption; rows: how many pairs to take), got {mapping!r} in {spec!r}")
        columns[role.strip()] = col.strip()
    if "rows" in columns and not (columns["rows"].isdigit() and int(columns["rows"]) > 0):
        raise InputError(f"expected rows=N with N >= 1 in {spec!r}, got rows={columns['rows']!r}")
    name, split = body, None
    if not Path(body).exists() and ":" in body:
        name, _, split = body.rpartition(":")
    return name, split or None, columns


def load(name: str, split: Optional[str]):
    """One split of a dataset: a saved folder's from disk, a data folder's or a hub name's streamed."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError("anchors from a Hugging Face dataset need the datasets package: pip install datasets") from exc
    try:
        ds = (datasets.load_from_disk(name) if is_saved_dataset(name)
              else datasets.load_dataset(name, split=split, streaming=True))
    except (ConnectionError, OSError, ValueError, FileNotFoundError) as exc:
        raise InputError(f"could not load the dataset {name!r} ({type(exc).__name__}: {exc}); offline, load it where "
                         f"there is a network, save it with Dataset.save_to_disk and give that folder") from exc
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise InputError(f"expected a split of {name!r} among {sorted(ds)}, got {split!r} (hf:NAME:SPLIT)")
        ds = ds[split]
    return ds


def column_names(ds):
    """A dataset's columns (a streamed one without a schema: its first row's)."""
    if ds.column_names is not None:
        return list(ds.column_names)
    first = next(iter(ds), None)
    return list(first) if first else []


def _column(ds, role: str, given: Optional[str], candidates) -> str:
    names = column_names(ds)
    if given is not None:
        if given not in names:
            raise InputError(f"expected a column {given!r} for the {role} in the dataset, got columns {names}")
        return given
    kinds = {"image": "Image", "audio": "Audio"}
    features = ds.features or {}
    typed = [c for c in names if type(features.get(c)).__name__ == kinds.get(role)]
    found = typed or [c for c in candidates if c in names]
    if not found:
        raise InputError(f"expected a {role} column in the dataset (one of {list(candidates)}, or say which: "
                         f"'#{role}=COLUMN'), got columns {names}")
    return found[0]


def media_modality(ds, columns: Dict[str, str]) -> str:
    if "audio" in columns or any(type(f).__name__ == "Audio" for f in (ds.features or {}).values()):
        return "audio"
    return "image"


def pairs_table(spec: str, cache: Path, show_progress_bar: Optional[bool] = None) -> Path:
    """The dataset's pairs as an anchor table of files under ``cache/datasets`` (made once)."""
    name, split, columns = parse(spec)
    ds = load(name, split)
    modality = media_modality(ds, columns)
    media = _column(ds, modality, columns.get(modality), MEDIA_COLUMNS[modality])
    caption = _column(ds, "caption", columns.get("caption"), CAPTION_COLUMNS)
    rows = int(columns["rows"]) if "rows" in columns else None
    key = hashlib.sha256(json.dumps([identity(ds, name), split, media, caption, rows]).encode()).hexdigest()[:24]
    folder = Path(cache) / "datasets" / key
    if not (folder / "pairs.parquet").is_file():
        _write(ds, modality, media, caption, rows, folder, show_progress_bar)
    return folder / "pairs.parquet"


def identity(ds, name: str):
    """What names a dataset's content for the cache: a saved one's fingerprint, a data folder's files
    (their names, sizes and times), else (a hub name) the name."""
    if getattr(ds, "_fingerprint", None):
        return ds._fingerprint
    folder = Path(name)
    if folder.is_dir():
        return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in folder.rglob("*") if p.is_file())
    return name


def _write(ds, modality: str, media: str, caption: str, rows: Optional[int], folder: Path, show_progress_bar) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.progress import progress

    feature = (ds.features or {}).get(media)
    if hasattr(feature, "decode"):  # Image / Audio: the stored bytes, not decoded pixels or samples
        ds = ds.cast_column(media, type(feature)(decode=False))
    total = len(ds) if hasattr(ds, "__len__") else None
    if rows is not None:
        ds, total = (ds.take(rows), rows) if total is None else (ds.select(range(min(rows, total))), min(rows, total))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        paths, captions = [], []
        for i, row in progress(enumerate(ds), total=total, desc="dataset pairs", show=show_progress_bar):
            paths.append(_media_file(row[media], tmp, i))
            captions.append(_caption(row[caption], i))
        if not paths:
            raise InputError("expected pairs in the dataset, got no rows")
        pq.write_table(pa.table({modality: [os.path.relpath(p, tmp) for p in paths], "caption": captions}),
                       tmp / "pairs.parquet")
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _media_file(value, folder: Path, i: int) -> str:
    """Row ``i``'s picture or sound as a file in ``folder``: its bytes as stored, named by their kind."""
    if isinstance(value, str):
        value = {"path": value, "bytes": None}
    data = value.get("bytes") if isinstance(value, dict) else None
    if data is None:
        src = value.get("path") if isinstance(value, dict) else None
        if not src or not os.path.isfile(src):
            raise InputError(f"expected a picture or sound (bytes or an existing file) in row {i} of the dataset, "
                             f"got {str(value)[:80]!r}")
        data = Path(src).read_bytes()
    ext = next((e for sig, e in SIGNATURES if data.startswith(sig)), Path(str(value.get("path") or "")).suffix or ".bin")
    out = folder / f"{i:07d}{ext}"
    out.write_bytes(data)
    return str(out)


def _caption(value, i: int) -> str:
    """A caption; of a list of captions (several per picture, as COCO's), the first."""
    if isinstance(value, (list, tuple)):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"expected a caption in row {i} of the dataset, got {value!r}")
    return value
