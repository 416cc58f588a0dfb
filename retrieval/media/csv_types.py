"""Types for the metadata columns of a CSV table, so that ``--where "year >= 2020"`` compares numbers.

A CSV has no types. Its columns are read as text, then each metadata column takes the first type
that every non-empty cell of it spells exactly (an empty cell is a null):

    integer   -12, 0, 2020          (no leading zeros: "007" is a code and stays text)
    float     3.5, -0.25, 1e-3, .5  (likewise no leading zeros: "01.5" stays text)
    boolean   true / false          (any case)
    date      2020-01-31            (ISO 8601)
    timestamp 2020-01-31T12:30:00   (ISO 8601, a space or a T between date and time)

A column that is all empty, or that mixes kinds, stays text. Paths, captions, labels and concepts
are never typed. For other types, or to keep a column as text whatever it holds, give the table as
Parquet, which stores its own types.
"""

from __future__ import annotations

import re
from typing import Collection, Optional

import pyarrow as pa
import pyarrow.compute as pc

INTEGER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
FLOAT = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
BOOLEAN = {"true": True, "false": False}
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?")
# Too wide for int64: such digits stay text rather than turning into an approximate float.
INT64_DIGITS = 18


def _typed(cells: list) -> Optional[pa.Array]:
    """The column as the first type every non-empty cell spells, or None to keep it as text."""
    values = [None if c is None or not c.strip() else c.strip() for c in cells]
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(INTEGER.fullmatch(v) and len(v.lstrip("+-")) <= INT64_DIGITS for v in present):
        return pa.array([None if v is None else int(v) for v in values], pa.int64())
    if all(FLOAT.fullmatch(v) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if all(v.lower() in BOOLEAN for v in present):
        return pa.array([None if v is None else BOOLEAN[v.lower()] for v in values], pa.bool_())
    for pattern, arrow_type in ((DATE, pa.date32()), (TIMESTAMP, pa.timestamp("us"))):
        if all(pattern.fullmatch(v) for v in present):
            try:
                return pc.cast(pa.array(values, pa.string()), arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None  # a pattern-shaped impossible date such as 2020-13-45: text
    return None


def typed_columns(table: pa.Table, keep_text: Collection[str] = ()) -> pa.Table:
    """``table`` (all text, as a CSV was read) with each column outside ``keep_text`` typed by its cells.

    >>> t = typed_columns(pa.table({"year": ["2020", "1999"], "code": ["007", "042"]}))
    >>> [str(f.type) for f in t.schema]
    ['int64', 'string']
    """
    for i, name in enumerate(table.column_names):
        if name in keep_text or not pa.types.is_string(table.schema.field(i).type):
            continue
        typed = _typed(table.column(i).to_pylist())
        if typed is not None:
            table = table.set_column(i, name, typed)
    return table
