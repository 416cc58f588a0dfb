"""Anchor pairs from a Hugging Face ``datasets`` dataset: the field's usual way to ship image–caption
(and sound–caption) pairs.

``hf:NAME[:SPLIT][#image=COL,caption=COL]`` loads from the hub (cached by ``datasets``; offline, a
clear error says to save it with ``save_to_disk``), ``hf:FOLDER[...]`` or a plain ``FOLDER`` a
dataset saved with ``save_to_disk``. The pairs are written once as files and a table in the cache
(``$RETRIEVAL_CACHE/datasets/KEY``, KEY from the dataset's fingerprint, split and columns; written
to a temporary folder and renamed), so an anchor set from a dataset is an anchor table like any
other: its content hash, cached encodings and manifest behave the same. Media are kept as the
dataset holds them (the original bytes), never decoded and re-encoded.
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
    """``hf:NAME:SPLIT#image=img,caption=text`` -> (NAME, SPLIT, {role: column})."""
    body = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    body, _, mapping = body.partition("#")
    columns = {}
    for part in filter(None, mapping.split(",")):
        role, eq, col = part.partition("=")
        if not eq or role.strip() not in ("image", "audio", "caption") or not col.strip():
            raise InputError(f"expected a column mapping such as '#image=img,caption=text' (roles image, audio, "
                             f"caption), got {mapping!r} in {spec!r}")
        columns[role.strip()] = col.strip()
    name, split = body, None
    if not Path(body).exists() and ":" in body:
        name, _, split = body.rpartition(":")
    return name, split or None, columns


def load(name: str, split: Optional[str]):
    """The ``datasets`` Dataset of a saved folder or a hub name, one split."""
    try:
        import datasets
    except ImportError as exc:
        raise InputError("anchors from a Hugging Face dataset need the datasets package: pip install datasets") from exc
    try:
        ds = datasets.load_from_disk(name) if is_saved_dataset(name) else datasets.load_dataset(name, split=split)
    except (ConnectionError, OSError, ValueError, FileNotFoundError) as exc:
        raise InputError(f"could not load the dataset {name!r} ({type(exc).__name__}: {exc}); offline, load it where "
                         f"there is a network, save it with Dataset.save_to_disk and give that folder") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) == 1:
            split = next(iter(ds))
        if split not in ds:
            raise InputError(f"expected a split of {name!r} among {sorted(ds)}, got {split!r} (hf:NAME:SPLIT)")
        ds = ds[split]
    return ds


def _column(ds, role: str, given: Optional[str], candidates) -> str:
    names = list(ds.column_names)
    if given is not None:
        if given not in names:
            raise InputError(f"expected a column {given!r} for the {role} in the dataset, got columns {names}")
        return given
    kinds = {"image": "Image", "audio": "Audio"}
    typed = [c for c in names if type(ds.features[c]).__name__ == kinds.get(role)]
    found = typed or [c for c in candidates if c in names]
    if not found:
        raise InputError(f"expected a {role} column in the dataset (one of {list(candidates)}, or say which: "
                         f"'#{role}=COLUMN'), got columns {names}")
    return found[0]


def media_modality(ds, columns: Dict[str, str]) -> str:
    if "audio" in columns or any(type(f).__name__ == "Audio" for f in ds.features.values()):
        return "audio"
    return "image"


def pairs_table(spec: str, cache: Path, show_progress_bar: Optional[bool] = None) -> Path:
    """The dataset's pairs as an anchor table of files under ``cache/datasets`` (made once)."""
    name, split, columns = parse(spec)
    ds = load(name, split)
    modality = media_modality(ds, columns)
    media = _column(ds, modality, columns.get(modality), MEDIA_COLUMNS[modality])
    caption = _column(ds, "caption", columns.get("caption"), CAPTION_COLUMNS)
    key = hashlib.sha256(json.dumps([ds._fingerprint, split, media, caption]).encode()).hexdigest()[:24]
    folder = Path(cache) / "datasets" / key
    if not (folder / "pairs.parquet").is_file():
        _write(ds, modality, media, caption, folder, show_progress_bar)
    return folder / "pairs.parquet"


def _write(ds, modality: str, media: str, caption: str, folder: Path, show_progress_bar) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.progress import progress

    feature = ds.features[media]
    if hasattr(feature, "decode"):  # Image / Audio: the stored bytes, not decoded pixels or samples
        ds = ds.cast_column(media, type(feature)(decode=False))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        paths, captions = [], []
        for i, row in progress(enumerate(ds), total=len(ds), desc="dataset pairs", show=show_progress_bar):
            paths.append(_media_file(row[media], tmp, i))
            captions.append(_caption(row[caption], i))
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
