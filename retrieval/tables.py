"""Reading the user's tables (Parquet or CSV) and folders of images with sidecar text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pyarrow as pa

from .errors import InputError
from .images import is_image_path

TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filepath")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category")


def read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # Read every column as text: captions such as "1984" must not become integers.
            with open(path, "rb") as f:
                header = f.readline().decode("utf-8", "replace").strip().split(",")
            opts = pcsv.ConvertOptions(column_types={h.strip('"'): pa.string() for h in header})
            return pcsv.read_csv(path, convert_options=opts)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"expected a readable {suffix[1:]} table at {str(path)!r}: {exc}") from exc
    raise InputError(f"expected a table ending in {', '.join(TABLE_SUFFIXES)} or a folder, got {str(path)!r}")


def pick_column(table: pa.Table, names: Sequence[str], *, path: Path, role: str, required: bool) -> Optional[str]:
    present = [n for n in names if n in table.column_names]
    if present:
        return present[0]
    if required:
        raise InputError(f"expected a {role} column named one of {list(names)} in {str(path)!r}, "
                         f"got columns {table.column_names}")
    return None


def table_rows(path: Path, *, caption_required: bool) -> List[Dict[str, Optional[str]]]:
    """Rows of {image, caption, label} from a table; relative image paths are resolved against the table's folder."""
    table = read_table(path)
    img_col = pick_column(table, IMAGE_COLUMNS, path=path, role="image path", required=True)
    cap_col = pick_column(table, CAPTION_COLUMNS, path=path, role="caption", required=caption_required)
    lab_col = pick_column(table, LABEL_COLUMNS, path=path, role="label", required=False)
    images = table.column(img_col).to_pylist()
    caps = table.column(cap_col).to_pylist() if cap_col else [None] * len(images)
    labels = table.column(lab_col).to_pylist() if lab_col else [None] * len(images)
    rows = []
    for i, (img, cap, lab) in enumerate(zip(images, caps, labels)):
        if img is None or not str(img).strip():
            raise InputError(f"expected an image path in row {i} of {str(path)!r}, got an empty value")
        p = Path(str(img))
        if not p.is_absolute():
            p = path.parent / p
        rows.append({"image": str(p), "caption": None if cap is None else str(cap),
                     "label": None if lab is None else str(lab)})
    return rows


def folder_rows(folder: Path) -> List[Dict[str, Optional[str]]]:
    """Images under a folder (recursive, sorted); ``x.txt`` beside ``x.png`` is its caption."""
    rows = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not is_image_path(name):
                continue
            img = Path(root) / name
            side = img.with_suffix(".txt")
            cap = side.read_text(encoding="utf-8").strip() if side.is_file() else None
            rows.append({"image": str(img), "caption": cap, "label": None})
    return rows


def rows_from(path, *, caption_required: bool, what: str) -> List[Dict[str, Optional[str]]]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"expected a {what} folder or table (.parquet/.csv), got {str(path)!r}, which does not exist")
    rows = folder_rows(path) if path.is_dir() else table_rows(path, caption_required=caption_required)
    if not rows:
        raise InputError(f"expected at least one image in the {what} {str(path)!r}, found none "
                         f"(image types: png, jpg, jpeg, webp, bmp, gif, tif)")
    return rows
