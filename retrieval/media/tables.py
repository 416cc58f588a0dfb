"""Reading the user's tables (Parquet or CSV) and folders of media files with sidecar text.

A row is ``{"path", "caption", "label"}``; the media modality (image or audio) is given, or read off
the table's column names or the folder's file types.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pyarrow as pa

from retrieval.errors import InputError
from retrieval.media.audio import AUDIO_EXTENSIONS
from retrieval.media.csv_types import typed_columns
from retrieval.media.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)
TABLE_SUFFIXES = (".parquet", ".pq", ".csv", ".arrow", ".feather", ".ipc")
MEDIA_EXTENSIONS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}
# Modality-specific names first: a table with an "audio" column holds sounds whatever its files end in.
NAMED_COLUMNS = {"image": ("image", "image_path"), "audio": ("audio", "audio_path", "sound")}
GENERIC_COLUMNS = ("path", "file", "filepath")
CAPTION_COLUMNS = ("caption", "text", "title")
LABEL_COLUMNS = ("label", "class", "category")
# Anchor tables only: rows sharing a concept are views of one anchor (retrieval/core/style.py).
CONCEPT_COLUMN = "concept"
# Embeddings made elsewhere (retrieval/encoders/vectors.py): a corpus table's "embedding" column holds
# its items' vectors; an anchor table's "image_embedding" / "audio_embedding" and "text_embedding"
# hold each side's. A row that has them needs no file.
EMBEDDING_COLUMN = "embedding"
EMBEDDING_SUFFIX = "_embedding"
# Columns a CSV keeps as text whatever they hold: paths, captions, labels and concepts.
TEXT_COLUMNS = frozenset(c for cols in NAMED_COLUMNS.values() for c in cols) | frozenset(
    GENERIC_COLUMNS + CAPTION_COLUMNS + LABEL_COLUMNS + (CONCEPT_COLUMN,))


def read_table(path: Path) -> pa.Table:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            # Read as text first, then type the metadata columns (csv_types.py): captions such as
            # "1984" and codes such as "007" must stay text, while "year >= 2020" needs a number.
            with open(path, "rb") as f:
                header = f.readline().decode("utf-8", "replace").strip().split(",")
            opts = pcsv.ConvertOptions(column_types={h.strip('"'): pa.string() for h in header})
            return typed_columns(pcsv.read_csv(path, convert_options=opts), keep_text=TEXT_COLUMNS)
        if suffix in (".arrow", ".feather", ".ipc"):
            import pyarrow.feather as feather

            return feather.read_table(path)  # Arrow IPC files, Feather v2 included
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


# items.parquet's own columns: a corpus table's metadata column may not take these names
RESERVED_COLUMNS = ("id", "path", "caption", "label", "sha256", "rel_indices", "rel_values")


def media_modality(path: str) -> Optional[str]:
    low = str(path).lower()
    return next((m for m, ext in MEDIA_EXTENSIONS.items() if low.endswith(ext)), None)


def guess_modality(query) -> str:
    """A string ending in an image or sound extension is such a file; other strings are text; the rest images."""
    if isinstance(query, os.PathLike):  # a path object is a file, never text
        return media_modality(os.fspath(query)) or "image"
    if isinstance(query, str):
        kind = media_modality(query)
        if kind and not os.path.isfile(query):
            raise InputError(f"expected an existing {kind} file, got {query!r}, which does not exist; "
                             f"pass modality='text' to search this string as text")
        return kind or "text"
    return "image"


def check_texts(queries: Sequence) -> None:
    """Refuse a text query that is not a string or holds nothing but spaces (it would match at random)."""
    for i, q in enumerate(queries):
        if not isinstance(q, str) or not q.strip():
            where = f" (query {i + 1} of {len(queries)})" if len(queries) > 1 else ""
            raise InputError(f"expected a text query with something other than spaces, got {q!r}{where}")


def _check_modality(modality: Optional[str]) -> None:
    if modality is not None and modality not in MEDIA_EXTENSIONS:
        raise InputError(f"expected a media modality in {sorted(MEDIA_EXTENSIONS)}, got {modality!r}")


def table_rows(path: Path, *, caption_required: bool,
               modality: Optional[str] = None) -> Tuple[str, List[Dict[str, Optional[str]]]]:
    """Rows of {path, caption, label} from a table; relative paths are resolved against the table's folder."""
    _check_modality(modality)
    table = with_sidecar_vectors(read_table(path), path)
    named = [(m, c) for m, cols in NAMED_COLUMNS.items() for c in cols if c in table.column_names]
    if modality is None and named:
        modality = named[0][0]
    vectors = embedding_columns(table, modality)
    if modality is None and vectors:
        modality = next((m for m in MEDIA_EXTENSIONS if m in vectors), None)
    wanted = (NAMED_COLUMNS[modality] if modality else ()) + GENERIC_COLUMNS
    all_names = sorted({c for cols in NAMED_COLUMNS.values() for c in cols} | set(GENERIC_COLUMNS))
    if not any(c in table.column_names for c in wanted) and not (modality and modality in vectors):
        raise InputError(f"expected a media path column named one of {all_names} (or an {EMBEDDING_COLUMN!r} column "
                         f"of vectors) in {str(path)!r}, got columns {table.column_names}")
    path_col = pick_column(table, wanted, path=path, role="media path", required=modality not in vectors)
    cap_col = pick_column(table, CAPTION_COLUMNS, path=path, role="caption", required=caption_required)
    if cap_col and cap_col != CAPTION_COLUMNS[0]:  # taken as captions only for want of a 'caption' column: say so
        log.warning("took the column %r of %s as the captions (there is no 'caption' column); name it 'caption' "
                    "to say so, or rename it to keep it as metadata for --where", cap_col, path)
    lab_col = pick_column(table, LABEL_COLUMNS, path=path, role="label", required=False)
    paths = (table.column(path_col).to_pylist() if path_col
             else [f"{path.name}#{i}" for i in range(table.num_rows)])  # the row names the item
    caps = table.column(cap_col).to_pylist() if cap_col else [None] * len(paths)
    labels = table.column(lab_col).to_pylist() if lab_col else [None] * len(paths)
    concepts = (table.column(CONCEPT_COLUMN).to_pylist() if CONCEPT_COLUMN in table.column_names
                else [None] * len(paths))
    # every other column is metadata: stored with the items, for filters (search --where)
    used = {path_col, cap_col, lab_col, CONCEPT_COLUMN} | {c for c in table.column_names if c == EMBEDDING_COLUMN
                                                          or c.endswith(EMBEDDING_SUFFIX)}
    extra = [c for c in table.column_names if c not in used]
    clash = [c for c in extra if c in RESERVED_COLUMNS]
    if clash:
        raise InputError(f"expected metadata columns with names of their own in {str(path)!r}, got {clash}, which "
                         f"the collection uses itself ({', '.join(RESERVED_COLUMNS)}); rename them")
    meta = {c: table.column(c).to_pylist() for c in extra}
    rows = []
    for i, (media, cap, lab, con) in enumerate(zip(paths, caps, labels, concepts)):
        if media is None or not str(media).strip():
            raise InputError(f"expected a file path in row {i} of {str(path)!r}, got an empty value")
        p = Path(str(media))
        if not p.is_absolute() and path_col:
            p = path.parent / p
        rows.append({"path": str(p), "caption": None if cap is None else str(cap),
                     **({"vectors": {m: v[i] for m, v in vectors.items()}} if vectors else {}),
                     "label": None if lab is None else str(lab),
                     "concept": None if con is None or not str(con).strip() else str(con),
                     **({"meta": {c: v[i] for c, v in meta.items()}} if meta else {})})
    if modality is None:  # a generic "path" column: judge by the files' extensions
        kinds = Counter(media_modality(r["path"]) for r in rows)
        modality = "audio" if kinds.get("audio", 0) > kinds.get("image", 0) else "image"
    return modality, rows


def with_sidecar_vectors(table: pa.Table, path: Path) -> pa.Table:
    """``table`` with the embedding columns kept beside it as ``.npy`` files: ``items.csv`` takes
    ``items.embedding.npy`` (and ``pairs.parquet`` ``pairs.text_embedding.npy``), one row a row.
    A CSV cannot hold lists of floats; a NumPy file holds them compactly."""
    import numpy as np

    for col in (EMBEDDING_COLUMN,) + tuple(m + EMBEDDING_SUFFIX for m in ("text",) + tuple(MEDIA_EXTENSIONS)):
        npy = path.with_suffix(f".{col}.npy")
        if not npy.is_file():
            continue
        if col in table.column_names:
            raise InputError(f"expected the {col!r} vectors once, got both a column of {str(path)!r} and {str(npy)!r}")
        try:
            x = np.load(npy, allow_pickle=False)  # never unpickle a file a user supplied
        except (ValueError, OSError) as exc:
            raise InputError(f"expected a NumPy array of vectors in {str(npy)!r}: {exc}") from exc
        if x.ndim != 2 or x.shape[0] != table.num_rows or x.dtype.kind not in "fiu":
            raise InputError(f"expected {str(npy)!r} to hold {table.num_rows} rows of numbers (one a row of "
                             f"{str(path)!r}), got an array of shape {x.shape} and type {x.dtype}")
        flat = pa.array(np.ascontiguousarray(x, np.float32).reshape(-1))
        table = table.append_column(col, pa.FixedSizeListArray.from_arrays(flat, x.shape[1]))
    return table


def embedding_columns(table: pa.Table, modality: Optional[str]) -> Dict[str, list]:
    """modality -> each row's vector (a list of floats), from a table's embedding columns: ``embedding``
    is the media modality's (``modality``, or the one named by a ``*_embedding`` column beside it)."""
    out = {c[:-len(EMBEDDING_SUFFIX)]: column_vectors(table.column(c)) for c in table.column_names
           if c.endswith(EMBEDDING_SUFFIX) and c[:-len(EMBEDDING_SUFFIX)] in ("text",) + tuple(MEDIA_EXTENSIONS)}
    if EMBEDDING_COLUMN in table.column_names:
        media = modality or next((m for m in MEDIA_EXTENSIONS if m in out), "image")
        if media in out:
            raise InputError(f"expected one column of {media} vectors, got both {EMBEDDING_COLUMN!r} and "
                             f"'{media}{EMBEDDING_SUFFIX}'")
        out[media] = column_vectors(table.column(EMBEDDING_COLUMN))
    return out


def column_vectors(column):
    """A column of vectors as one (rows, width) NumPy array (rows are views of it) when every row is
    there and of one width; else each row as a list of floats, so that the rows that differ are named
    where the vectors are checked (retrieval/encoders/vectors.py). As Python floats, a million rows of
    1,472 took some 47 GB; as one array, their bytes."""
    import numpy as np

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if isinstance(arr.type, (pa.ListType, pa.LargeListType, pa.FixedSizeListType)) and arr.null_count == 0:
        flat = arr.flatten()
        width = len(flat) // max(len(arr), 1)
        lengths = arr.value_lengths().to_numpy(zero_copy_only=False) if len(arr) else np.zeros(0)
        numbers = pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)
        if numbers and flat.null_count == 0 and (lengths == width).all():
            return flat.to_numpy(zero_copy_only=False).reshape(len(arr), width)
    return column.to_pylist()


def folder_rows(folder: Path, modality: Optional[str] = None) -> Tuple[str, List[Dict[str, Optional[str]]]]:
    """Media files under a folder (recursive, sorted); ``x.txt`` beside ``x.png`` is its caption.

    Without ``modality``, the folder's kind is the one its files have; a folder holding both images
    and sounds is ambiguous and refused.
    """
    _check_modality(modality)
    found: Dict[str, List[Path]] = {m: [] for m in MEDIA_EXTENSIONS}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            kind = media_modality(name)
            if kind and not name.startswith("."):
                found[kind].append(Path(root) / name)
    if modality is None:
        present = [m for m, files in found.items() if files]
        if len(present) > 1:
            raise InputError(f"expected one kind of media in {str(folder)!r}, got "
                             f"{', '.join(f'{len(found[m])} {m} files' for m in present)}; "
                             f"say which with modality= (--modality)")
        modality = present[0] if present else "image"
    rows = []
    for media in found[modality]:
        side = media.with_suffix(".txt")
        cap = side.read_text(encoding="utf-8").strip() if side.is_file() else None
        rows.append({"path": str(media), "caption": cap, "label": None})
    return modality, rows


def rows_from(path, *, caption_required: bool, what: str,
              modality: Optional[str] = None) -> Tuple[str, List[Dict[str, Optional[str]]]]:
    """(modality, rows) of a folder or a table."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"expected a {what} folder or table (.parquet/.csv), got {str(path)!r}, which does not exist")
    if path.is_dir():
        modality, rows = folder_rows(path, modality)
    else:
        modality, rows = table_rows(path, caption_required=caption_required, modality=modality)
    if not rows:
        exts = ", ".join(e.lstrip(".") for e in MEDIA_EXTENSIONS[modality])
        raise InputError(f"expected at least one {modality} file in the {what} {str(path)!r}, found none "
                         f"({modality} types: {exts})")
    # Absolute (symlinks kept as given): a collection records these, and must find its files from
    # whatever directory it is later searched or served.
    for r in rows:
        if "vectors" not in r or os.path.exists(r["path"]):
            r["path"] = os.path.abspath(r["path"])
    return modality, rows
