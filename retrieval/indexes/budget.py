"""Choosing a FAISS index for dense vectors from human budgets (pure: estimates only, no FAISS).

``plan_dense(n, d, max_memory="4G", max_query_ms=10)`` returns the most exact structure whose
estimated memory and single-query time fit: ``Flat`` (exact), then ``HNSW32``, then
``IVF{nlist},Flat``, then ``IVF{nlist},PQ{m}``, as FAISS factory strings with their search
parameters. The compressed option (IVF-PQ) comes with an exact re-rank: FAISS returns RERANK times
the candidates, which are re-scored against the full embeddings, memory-mapped from the collection's
folder and so not counted against the memory budget (only the rows a query touches are read).
The estimates are rough on purpose (bytes from the structures' layouts, time from
multiply-adds at ``gflops``); ``scripts/bench_dense.py`` measures what the choices really do.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

from retrieval.errors import InputError

# Effective rate of one query's distance computations on these 2-core machines (a single query
# cannot use a GEMM's full speed); see results/bench/README.md.
SINGLE_QUERY_GFLOPS = 20.0
# Candidates re-scored exactly per result wanted, for the compressed (PQ) option; measured in
# results/bench/dense.md: PQ codes alone kept 0.31 of the exact top 10.
RERANK = 8
RERANKED = 10 + 16  # results a query re-scores per RERANK: top 10 plus the dense routes' candidate margin
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40}


def parse_size(value: Union[str, int, float, None]) -> Optional[int]:
    """``"4G"``, ``"500MB"``, ``"1.5G"``, ``1024`` -> bytes; None stays None.

    >>> parse_size("1.5G")
    1610612736
    """
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?B?)\s*", str(value).upper())
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"expected a memory size such as '4G', '500M' or a number of bytes, got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class DenseOption:
    factory: str
    params: str            # FAISS search parameters, e.g. "efSearch=128" ("" for none)
    exact: bool
    est_bytes: int
    est_ms: float
    rerank: int = 0         # candidates re-scored exactly, per result wanted (0 = none)


@dataclass(frozen=True)
class DensePlan:
    chosen: DenseOption
    options: Tuple[DenseOption, ...] = field(default_factory=tuple)

    def explain(self) -> str:
        lines = [f"{'index':<22} {'params':<14} {'exact':>5} {'re-rank':>7} {'est. memory':>12} {'est. ms/query':>14}"]
        for o in self.options:
            mark = "  <- chosen" if o == self.chosen else ""
            rr = f"x{o.rerank}" if o.rerank else "-"
            lines.append(f"{o.factory:<22} {o.params:<14} {str(o.exact):>5} {rr:>7} {o.est_bytes / 2**20:>10.1f}MB "
                         f"{o.est_ms:>14.3f}{mark}")
        return "\n".join(lines)


def _pq_m(d: int) -> int:
    """PQ sub-quantisers: the largest of 64, 48, 32, 16, 8 that divides d, at most d / 4."""
    for m in (64, 48, 32, 16, 8, 4, 2, 1):
        if d % m == 0 and m <= max(1, d // 4):
            return m
    return 1


def options(n: int, d: int, gflops: float = SINGLE_QUERY_GFLOPS) -> List[DenseOption]:
    """Every structure considered, most exact first, with its estimates for n vectors of width d."""
    if n < 1 or d < 1:
        raise InputError(f"expected at least one vector of width >= 1, got n={n}, d={d}")
    ms = lambda flops: flops / (gflops * 1e9) * 1e3  # noqa: E731
    nlist = max(1, min(n // 39, 2 ** round(math.log2(4 * math.sqrt(n)))))  # FAISS wants >= 39 points a list
    nprobe = min(nlist, 32)
    m = _pq_m(d)
    ef, links = 128, 32
    return [
        DenseOption("Flat", "", True, 4 * n * d, ms(2.0 * n * d)),
        DenseOption(f"HNSW{links}", f"efSearch={ef}", False, n * (4 * d + 2 * links * 4 + 16),
                    ms(2.0 * d * ef * links * 1.5)),
        DenseOption(f"IVF{nlist},Flat", f"nprobe={nprobe}", nprobe == nlist, n * (4 * d + 8) + 4 * nlist * d,
                    ms(2.0 * nlist * d + 2.0 * n * d * nprobe / nlist)),
        DenseOption(f"IVF{nlist},PQ{m}", f"nprobe={nprobe}", False, n * (m + 8) + 4 * nlist * d + 4 * 256 * d,
                    ms(2.0 * nlist * d + 2.0 * 256 * d + 1.0 * n * m * nprobe / nlist + 2.0 * d * RERANK * RERANKED),
                    RERANK),
    ]


def plan_dense(n: int, d: int, *, max_memory=None, max_query_ms: Optional[float] = None,
               gflops: float = SINGLE_QUERY_GFLOPS) -> DensePlan:
    """The most exact option within both budgets (None = no limit); an error lists every option's
    estimates when none fits.

    >>> plan_dense(1_000_000, 384, max_query_ms=5).chosen.factory
    'HNSW32'
    """
    budget = parse_size(max_memory)
    if max_query_ms is not None and max_query_ms <= 0:
        raise InputError(f"expected max_query_ms > 0, got {max_query_ms}")
    opts = options(n, d, gflops)
    for o in opts:
        if (budget is None or o.est_bytes <= budget) and (max_query_ms is None or o.est_ms <= max_query_ms):
            return DensePlan(o, tuple(opts))
    table = DensePlan(opts[0], tuple(opts)).explain()
    raise InputError(f"expected a dense index for {n} x {d} vectors within max_memory={max_memory} and "
                     f"max_query_ms={max_query_ms}; none fits by estimate:\n{table}")
