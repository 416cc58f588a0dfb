"""Vectors and tables in Arrow/Parquet, and atomic file writes.

Dense vectors are stored as ``FixedSizeList<float32>[dim]`` columns and sparse (CSR) rows as a pair
of ``List<int32>`` indices and ``List<float32>`` values: plain columnar data, readable by any Arrow
tool and never executable the way a pickle is.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Dict, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp


def dense_column(x: np.ndarray) -> pa.FixedSizeListArray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), x.shape[1])


def dense_from_column(col, dim: int) -> np.ndarray:
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(col) == 0:
        return np.zeros((0, dim), np.float32)
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, np.float32).reshape(len(col), dim)


def sparse_columns(x: sp.csr_matrix):
    x = sp.csr_matrix(x)
    offsets = pa.array(x.indptr.astype(np.int32), pa.int32())
    return (pa.ListArray.from_arrays(offsets, pa.array(x.indices.astype(np.int32), pa.int32())),
            pa.ListArray.from_arrays(offsets, pa.array(x.data.astype(np.float32), pa.float32())))


def sparse_from_columns(indices, values, n_cols: int) -> sp.csr_matrix:
    indices = indices.combine_chunks() if isinstance(indices, pa.ChunkedArray) else indices
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    indptr = np.asarray(indices.offsets.to_numpy(), np.int64)
    indptr = indptr - indptr[0]
    idx = np.asarray(indices.flatten().to_numpy(zero_copy_only=False), np.int32)
    val = np.asarray(values.flatten().to_numpy(zero_copy_only=False), np.float32)
    return sp.csr_matrix((val, idx, indptr), shape=(len(indices), n_cols))


def write_parquet_atomic(table: pa.Table, path: str, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write next to the destination and rename, so readers never see a half-written file."""
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    write_table_atomic(table, path, "parquet")


def write_table_atomic(table: pa.Table, path: str, kind: str) -> None:
    """``table`` as ``kind`` ("parquet" or "csv") at ``path``, written beside it and renamed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Not mkstemp: its files are 0600 whatever the umask, and the collection would keep that mode.
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}.{kind}")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        if kind == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
