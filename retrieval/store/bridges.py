"""Fitted bridges on disk: translators (one-row Parquet) and style normalisers (plain .npy).
Nothing is pickled; shapes are checked on reading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from retrieval.core.style import DEFAULT_LAMBDA, StyleNormaliser
from retrieval.core.translation import Translator
from retrieval.errors import CollectionFormatError, InputError
from retrieval.store.arrow import write_parquet_atomic

ARRAYS = ("weight_", "x_mean_", "x_std_", "y_mean_", "y_std_")


def save_translator(t: Translator, path: str) -> None:
    """Write a fitted translator as one-row Parquet: arrays as float64 lists, parameters in metadata."""
    if not hasattr(t, "weight_"):
        raise InputError("expected a fitted Translator, got an unfitted one")
    cols = {name: pa.array([np.asarray(getattr(t, name), np.float64).ravel()], pa.list_(pa.float64())) for name in ARRAYS}
    meta = {"retrieval.translator": json.dumps({**t.get_params(), "dim_in": t.dim_in_, "dim_out": t.dim_out_,
                                                "weight_shape": list(t.weight_.shape)})}
    write_parquet_atomic(pa.table(cols), path, meta)


def load_translator(path: str) -> Translator:
    """Read a translator written by :func:`save_translator` (checked shapes; no code is executed)."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"retrieval.translator")
    if raw is None or table.num_rows != 1 or set(table.column_names) != set(ARRAYS):
        raise InputError(f"expected a translator file written by retrieval, got {path!r}")
    meta = json.loads(raw)
    t = Translator(meta["method"], meta["standardize"])
    t.dim_in_, t.dim_out_ = int(meta["dim_in"]), int(meta["dim_out"])
    for name in ARRAYS:
        # the list's flat values straight into numpy: .as_py() builds a Python float per entry
        setattr(t, name, np.asarray(table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False),
                                    np.float64))
    shape = tuple(meta["weight_shape"])
    if t.weight_.size != int(np.prod(shape)):
        raise InputError(f"translator file {path!r} has inconsistent shapes; rebuild the collection")
    t.weight_ = t.weight_.reshape(shape)
    if t.method == "orthogonal" and shape == (t.width_, t.width_):
        t.weight_ = t.weight_[: t.dim_in_, : t.dim_out_]  # written before only the used block was kept
    want = (t.dim_in_ + (t.method == "affine"), t.dim_out_)
    if t.weight_.shape != want or t.x_mean_.shape != (t.dim_in_,) or t.y_mean_.shape != (t.dim_out_,):
        raise InputError(f"translator file {path!r} has inconsistent shapes; rebuild the collection")
    return t


def save_style(style: StyleNormaliser, folder, modality: str) -> dict:
    """Write the matrix as ``{modality}_style.npy`` (plain .npy, no pickle); returns its manifest entry."""
    name = f"{modality}_style.npy"
    np.save(Path(folder) / name, np.ascontiguousarray(style.matrix, np.float32), allow_pickle=False)
    return dict(style.meta(), modality=modality, file=name)


def load_style(folder, entry: dict, dim: int) -> StyleNormaliser:
    """Read a normaliser written by :func:`save_style` (after the manifest's checksums were verified)."""
    m = np.load(Path(folder) / entry["file"], allow_pickle=False)
    if m.dtype != np.float32 or m.shape != (dim, dim):
        raise CollectionFormatError(f"expected {entry['file']} of float32 shape {(dim, dim)}, got {m.dtype} {m.shape}: "
                                    f"the collection is damaged; rebuild it")
    return StyleNormaliser(m, float(entry.get("lambda", DEFAULT_LAMBDA)), int(entry.get("views", 0)),
                           int(entry.get("concepts", 0)))
