"""An approximate first stage for the inverted index: each anchor's heaviest postings, then an exact rescore.

At a million items with k = 256 of 1,758 anchors a text query's postings number some 37 million, and
its heaviest terms are the hub anchors that most items keep (postings of 600,000 items and more): the
exact search, bounded or not, reads them whole (18 ms at the median, 60 ms at p99 on one thread,
results/bench/inverted-bounded.md). An item in the top 10 of a query is almost always among the items
that weigh most on the query's heaviest anchors. So, for a dense query:

1. the postings of each anchor are cut to its ``head`` share of the items with the largest |weight|
   (made when the setting is given, or on the first approximate search, and kept: a second, small
   copy of the postings);
2. the query's ``terms`` heaviest anchors (by |weight|) add up their heads' postings, touched items only;
3. the ``candidates`` best partial sums are scored exactly from their rows (the bounded search's
   forward copy), and the engine's tie-break ranks them as every backend does.

What it returns is exact for the items it returns (their scores are the full path's, bit for bit), but
an item can be missed: recall against the exact search is measured, never assumed
(``scripts/bench_inverted_approximate.py``). A filtered search takes its candidates among the rows
the filter allows. A query that is not dense, one whose heads touch fewer than k (allowed) items and
an index without the bounded search's rows are answered exactly, as without this setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from retrieval.errors import InputError

# Items whose scores and stamps (256 KB) are written at a time: 1.1-1.5 x one pass over a million items,
# 32,768 the best of 2^15..2^18 (exploratory, scale-1m, 16 terms of 20,000 postings).
BLOCK = 1 << 15


@dataclass(frozen=True)
class Approximate:
    """How much of a dense query an approximate search reads: its ``terms`` heaviest anchors, of each
    the ``head`` share of the items weighing most on it, and ``candidates`` items rescored exactly.

    The defaults were chosen on validation queries at a million items (the fastest setting whose
    validation recall@10 against the exact search was at least 0.99; the test queries' recall beside
    it: results/bench/inverted-approximate.md).

    >>> Approximate(terms=8).to_spec()
    {'terms': 8, 'head': 0.02, 'candidates': 1024}
    """
    terms: int = 16
    head: float = 0.02
    candidates: int = 1024

    def __post_init__(self):
        whole = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                    for v in (self.terms, self.candidates))
        share = isinstance(self.head, (int, float, np.integer, np.floating)) and not isinstance(self.head, bool)
        if not whole or not (share and 0.0 < float(self.head) <= 1.0):
            raise InputError(f"expected an approximate search with terms and candidates whole numbers >= 1 and head "
                             f"a share of the items in (0, 1], got terms {self.terms!r}, head {self.head!r}, "
                             f"candidates {self.candidates!r}")

    def to_spec(self) -> Dict:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> "Approximate":
        """``"TERMS,HEAD,CANDIDATES"`` as a command line gives it, or ``""``/``"default"`` for the defaults.

        >>> Approximate.parse("8,0.01,512")
        Approximate(terms=8, head=0.01, candidates=512)
        """
        if text.strip() in ("", "default"):
            return cls()
        parts = [p.strip() for p in text.split(",")]
        try:
            if len(parts) != 3:
                raise ValueError
            return cls(int(parts[0]), float(parts[1]), int(parts[2]))
        except ValueError:
            raise InputError(f"expected an approximate setting TERMS,HEAD,CANDIDATES such as 16,0.02,1024 (or "
                             f"'default'), got {text!r}") from None

    @classmethod
    def of(cls, value) -> Optional["Approximate"]:
        """An Approximate from itself, a spec dict (missing fields take the defaults), True (the
        defaults), or None / False (exact search)."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"terms", "head", "candidates"})
            if unknown:
                raise InputError(f"expected approximate settings among terms, head and candidates, got {unknown}")
            return cls(**value)
        raise InputError(f"expected an approximate setting (True, a dict of terms/head/candidates, or None), "
                         f"got {value!r}")


class Heads:
    """Each anchor's postings cut to the items with the largest |weight| (ascending ids within an
    anchor, as the full postings are): ``ptr`` (anchors + 1), ``ids`` (int32), ``weights`` (the
    postings' dtype)."""

    def __init__(self, ptr: np.ndarray, ids: np.ndarray, weights: np.ndarray):
        self.ptr, self.ids, self.weights = ptr, ids, weights

    @classmethod
    def of(cls, indptr: np.ndarray, ids: np.ndarray, weights: np.ndarray, keep: int) -> "Heads":
        """The heads of postings (``indptr``, ``ids``, ``weights``), at most ``keep`` entries an anchor."""
        lengths = np.diff(np.asarray(indptr))
        kept = np.minimum(lengths, keep)
        ptr = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        out_ids, out_w = np.empty(ptr[-1], np.int32), np.empty(ptr[-1], weights.dtype)
        for a in np.flatnonzero(kept):
            s, e = int(indptr[a]), int(indptr[a + 1])
            w = np.asarray(weights[s:e])
            pick = slice(None) if e - s <= keep else np.sort(np.argpartition(-np.abs(w.astype(np.float32)), keep - 1)[:keep])
            out_ids[ptr[a]:ptr[a + 1]], out_w[ptr[a]:ptr[a + 1]] = np.asarray(ids[s:e])[pick], w[pick]
        return cls(ptr, out_ids, out_w)

    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.ids.nbytes + self.weights.nbytes)


def head_size(setting: Approximate, n: int) -> int:
    """Entries an anchor's head keeps for ``n`` items: at least the candidates rescored, so that a
    small index's heads are its whole postings."""
    return max(int(np.ceil(setting.head * n)), setting.candidates)


def candidates(heads: Heads, q_idx: np.ndarray, q_val: np.ndarray, setting: Approximate, ws,
               lut: np.ndarray, k: int = 0, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The items (among those ``mask`` marks, if given) whose partial sums over the query's ``terms``
    heaviest anchors' heads are among the ``candidates`` best, or the ``k`` best when more are asked
    for (ties at the cut included). ``ws``: an inverted index workspace (its score buffer, stamps,
    touched list and candidate buffers); ``lut``: the float16 decoding table, or an empty one for
    float32 weights."""
    from retrieval.indexes import kernels  # numba: imported once a search needs it

    top = np.argsort(-np.abs(q_val), kind="stable")[:setting.terms]
    ws.new_tag()
    weights = heads.weights.view(np.uint16) if heads.weights.dtype == np.float16 else heads.weights
    t = kernels.accumulate_blocked(heads.ptr, heads.ids, weights, lut, q_idx[top], q_val[top], ws.acc, ws.stamp,
                                   ws.tag, ws.touched, np.empty(len(top), np.int64), BLOCK)
    touched = ws.touched
    if mask is not None:  # a filter: only its rows compete for the candidates' places
        touched = touched[:t][mask[touched[:t]]]
        t = len(touched)
    wanted = max(setting.candidates, k)
    if t <= wanted:
        return touched[:t].astype(np.int64)
    heap = np.empty(wanted, np.float32)
    _, count = kernels.select(ws.acc, touched, t, wanted, np.float32(0.0), heap, ws.cand_ids, ws.cand_scores)
    return ws.cand_ids[:count].copy()


def search(heads: Heads, bounds, table, q_idx: np.ndarray, q_val: np.ndarray, k: int, setting: Approximate, ws,
           lut: np.ndarray, mask: Optional[np.ndarray] = None) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(items, exact scores): the candidates (among the rows ``mask`` marks, if given) within the tie
    tolerance of the k-th best of them, for :func:`retrieval.core.ranking.rank_candidates`; None when
    the heads touch fewer than k (the exact search answers then). ``bounds``: the bounded search's rows."""
    from retrieval.indexes import bounded, kernels

    found = candidates(heads, q_idx, q_val, setting, ws, lut, k, mask)
    if len(found) < k:  # fewer touched items than asked: the rest are the full path's business
        return None
    return bounded.exact_scores(bounds, kernels.rescore, table, q_idx, q_val, found, k)
