"""Metadata filters: a small, safe expression language over a collection's stored table columns.

    label = 'cat' AND year >= 2020
    NOT (caption LIKE '%dog%') OR id IN (3, 17, 42)
    label IS NOT NULL

Grammar (keywords in any case)::

    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | '(' expr ')' | comparison
    comparison := column op literal | column [NOT] IN '(' literal, ... ')'
                | column IS [NOT] NULL | column [NOT] LIKE 'pattern'
    op         := = | != | <> | < | <= | > | >=
    literal    := 'string' ('' escapes a quote) | number | TRUE | FALSE
    column     := name | "quoted name"

It is parsed here and evaluated with Arrow compute kernels: nothing is ever handed to ``eval`` or to
a SQL engine, so an expression can read nothing but the table's own columns. Comparisons follow SQL:
a null value matches nothing (use ``IS NULL``). Every mistake is a :class:`FilterError` that says
where, and lists the columns with their types.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from retrieval.errors import InputError

# Columns that hold vectors, not metadata: never offered to a filter.
HIDDEN = ("rel_indices", "rel_values")
EXAMPLE = "label = 'cat' AND year >= 2020"
MAX_LENGTH = 2000
OPS = {"=": pc.equal, "!=": pc.not_equal, "<>": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
       ">": pc.greater, ">=": pc.greater_equal}
KEYWORDS = ("AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "TRUE", "FALSE")
TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^']|'')*')
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.X)


class FilterError(InputError):
    """A filter that does not parse, names a column the collection lacks, or compares across types.
    The CLI exits 2; the server answers 422."""


@dataclass(frozen=True)
class Compare:
    column: str
    op: str                    # an OPS key, "in", "like" or "null"
    value: object = None       # a literal, a tuple of literals (in), a pattern (like)
    negate: bool = False       # NOT IN, NOT LIKE, IS NOT NULL
    at: int = 0                # character offset, for messages


@dataclass(frozen=True)
class Logic:
    op: str                    # "and", "or", "not"
    args: Tuple


Node = Union[Compare, Logic]


def _tokens(text: str) -> List[Tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if not m:
            raise FilterError(f"expected a filter such as \"{EXAMPLE}\", got {text!r}: cannot read "
                              f"{text[pos:].strip()[:20]!r} at character {pos + 1}")
        kind = m.lastgroup
        value = m.group(kind)
        start = m.start(kind)
        if kind == "word" and value.upper() in KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value, start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text, self.toks, self.i = text, _tokens(text), 0

    def fail(self, what: str):
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        got = f"{tok[1]!r} at character {tok[2] + 1}" if tok else "the end of the filter"
        raise FilterError(f"expected {what} in the filter {self.text!r}, got {got} (a filter looks like \"{EXAMPLE}\")")

    def peek(self, kind=None, value=None) -> bool:
        if self.i >= len(self.toks):
            return False
        k, v, _ = self.toks[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind=None, value=None, what=""):
        if not self.peek(kind, value):
            self.fail(what or (value or kind))
        self.i += 1
        return self.toks[self.i - 1]

    def parse(self) -> Node:
        if not self.toks:
            self.fail("a condition")
        node = self.expr()
        if self.i < len(self.toks):
            self.fail("AND, OR or the end")
        return node

    def expr(self) -> Node:
        args = [self.term()]
        while self.peek("kw", "OR"):
            self.i += 1
            args.append(self.term())
        return args[0] if len(args) == 1 else Logic("or", tuple(args))

    def term(self) -> Node:
        args = [self.factor()]
        while self.peek("kw", "AND"):
            self.i += 1
            args.append(self.factor())
        return args[0] if len(args) == 1 else Logic("and", tuple(args))

    def factor(self) -> Node:
        if self.peek("kw", "NOT"):
            self.i += 1
            return Logic("not", (self.factor(),))
        if self.peek("punct", "("):
            self.i += 1
            node = self.expr()
            self.take("punct", ")", "')'")
            return node
        return self.comparison()

    def literal(self):
        if self.peek("string"):
            return self.take()[1][1:-1].replace("''", "'")
        if self.peek("number"):
            v = self.take()[1]
            return float(v) if any(c in v for c in ".eE") else int(v)
        if self.peek("kw", "TRUE") or self.peek("kw", "FALSE"):
            return self.take()[1] == "TRUE"
        self.fail("a value: a 'quoted string', a number, TRUE or FALSE")

    def comparison(self) -> Compare:
        if self.peek("word"):
            _, column, at = self.take()
        elif self.peek("quoted"):
            _, q, at = self.take()
            column = q[1:-1].replace('""', '"')
        else:
            self.fail("a column name")
        if self.peek("op"):
            op = self.take()[1]
            return Compare(column, op, self.literal(), at=at)
        if self.peek("kw", "IS"):
            self.i += 1
            negate = self.peek("kw", "NOT")
            self.i += negate
            self.take("kw", "NULL", "NULL")
            return Compare(column, "null", negate=negate, at=at)
        negate = self.peek("kw", "NOT")
        self.i += negate
        if self.peek("kw", "IN"):
            self.i += 1
            self.take("punct", "(", "'('")
            values = [self.literal()]
            while self.peek("punct", ","):
                self.i += 1
                values.append(self.literal())
            self.take("punct", ")", "')'")
            return Compare(column, "in", tuple(values), negate, at)
        if self.peek("kw", "LIKE"):
            self.i += 1
            pattern = self.literal()
            if not isinstance(pattern, str):
                self.fail("a 'quoted pattern' after LIKE")
            return Compare(column, "like", pattern, negate, at)
        self.fail("a comparison (=, !=, <, <=, >, >=), IN, LIKE or IS NULL")


def parse(text: str) -> Node:
    """The expression's tree; :class:`FilterError` when it does not parse."""
    if not isinstance(text, str) or not text.strip():
        raise FilterError(f"expected a filter such as \"{EXAMPLE}\", got {text!r}")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"expected a filter of at most {MAX_LENGTH} characters, got {len(text)}")
    return _Parser(text).parse()


def columns(table: pa.Table) -> List[Tuple[str, str]]:
    """(name, type) of every column a filter may name."""
    return [(f.name, str(f.type)) for f in table.schema if f.name not in HIDDEN and not pa.types.is_nested(f.type)]


def _listing(table: pa.Table) -> str:
    return ", ".join(f"{n} ({t})" for n, t in columns(table))


def _kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_temporal(t):
        return "time"
    return "other"


def _scalar(value, column: str, t: pa.DataType, table: pa.Table, at: int):
    """The literal as a scalar of the column's type, or a FilterError that says which types meet."""
    kind = _kind(t)
    ok = {"number": isinstance(value, (int, float)) and not isinstance(value, bool),
          "string": isinstance(value, str), "boolean": isinstance(value, bool),
          "time": isinstance(value, str)}.get(kind, False)
    if not ok:
        want = {"number": "a number", "string": "a 'quoted string'", "boolean": "TRUE or FALSE",
                "time": "a 'quoted' ISO date or time such as '2020-01-31'"}.get(kind, "nothing: it cannot be compared")
        raise FilterError(f"expected {want} to compare with column {column!r} ({t}) at character {at + 1}, got "
                          f"{value!r}; columns: {_listing(table)}")
    if kind == "time":
        try:
            return pa.scalar(value).cast(t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise FilterError(f"expected an ISO date or time for column {column!r} ({t}), got {value!r}: "
                              f"{exc}") from exc
    if kind == "number":
        return pa.scalar(value)
    return pa.scalar(value, t if kind == "string" else pa.bool_())


def _evaluate(node: Node, table: pa.Table):
    if isinstance(node, Logic):
        parts = [_evaluate(a, table) for a in node.args]
        if node.op == "not":
            return pc.invert(parts[0])
        out = parts[0]
        for p in parts[1:]:
            out = pc.and_kleene(out, p) if node.op == "and" else pc.or_kleene(out, p)
        return out
    if node.column not in table.column_names or node.column in HIDDEN:
        raise FilterError(f"expected a column of this collection in the filter, got {node.column!r} at character "
                          f"{node.at + 1}; columns: {_listing(table)}")
    arr = table.column(node.column)
    if node.op == "null":
        out = pc.is_null(arr)
    elif node.op == "in":
        values = [_scalar(v, node.column, arr.type, table, node.at) for v in node.value]
        value_set = pa.array([v.as_py() for v in values], values[0].type)
        out = pc.is_in(arr, value_set=value_set.cast(arr.type) if _kind(arr.type) == "number" else value_set)
        out = pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), out)  # SQL: null IN (...) is unknown
    elif node.op == "like":
        if _kind(arr.type) != "string":
            raise FilterError(f"expected a string column for LIKE, got {node.column!r} ({arr.type}); columns: "
                              f"{_listing(table)}")
        out = pc.match_like(arr, node.value)
    else:
        out = OPS[node.op](arr, _scalar(node.value, node.column, arr.type, table, node.at))
    return pc.invert(out) if node.negate else out


def evaluate(where: Union[str, Node], table: pa.Table) -> np.ndarray:
    """A boolean mask over the table's rows: True where the filter holds (null counts as false)."""
    node = parse(where) if isinstance(where, str) else where
    result = _evaluate(node, table)
    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), bool)


def allowed_rows(where: str, table: pa.Table) -> np.ndarray:
    """The rows (ascending) where the filter holds: what the index backends restrict a search to."""
    return np.flatnonzero(evaluate(where, table)).astype(np.int64)


def describe(tables: Sequence[pa.Table]) -> str:
    return "; ".join(_listing(t) for t in tables)
