"""The inverted index's numba kernels (retrieval/indexes/inverted.py, bounded.py), imported on first
search so that a machine without numba still imports the index modules.

Every kernel is a module-level function: numba's on-disk cache finds those again in the next process,
where kernels made inside a function (closures over a decoder) were compiled anew in every process
and added to the cache each time. Weights arrive as float32 or, for float16 (which numba lacks), as
their uint16 bit patterns; the two decoders below are resolved by the weights' type when a kernel is
compiled, so one kernel serves both dtypes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import overload


def from_bits(w, lut):
    """A float16 bit pattern's value, computed (``lut``: 2^(e-25) for each exponent e); float32 as is."""


def from_table(w, table):
    """A float16 bit pattern's value read from a 65,536-entry table; float32 as is."""


@overload(from_bits, inline="always")
def _from_bits(w, lut):
    if not isinstance(w, types.Integer):
        return lambda w, lut: w

    def decode(w, lut):
        # A normal half is (1024 + mantissa) x 2^(exponent - 25), the 32 powers of two in ``lut`` (in L1
        # cache; the full table was slower on the touched-item path); subnormals are mantissa x 2^-24.
        e = (w >> 10) & 0x1F
        mant = np.float32(w & 0x3FF)
        v = mant * np.float32(5.9604645e-08) if e == 0 else (np.float32(1024.0) + mant) * lut[e]
        return -v if w & 0x8000 else v
    return decode


@overload(from_table, inline="always")
def _from_table(w, table):
    if not isinstance(w, types.Integer):
        return lambda w, table: w
    return lambda w, table: table[w]


@njit(inline="always")
def push(heap, size, k, v):
    """Keep the k largest values seen in a min-heap (``heap[0]`` the k-th best); returns its new size."""
    if size < k:
        pos = size
        size += 1
        while pos > 0:
            parent = (pos - 1) >> 1
            if heap[parent] <= v:
                break
            heap[pos] = heap[parent]
            pos = parent
        heap[pos] = v
    elif v > heap[0]:
        pos = 0
        while True:
            child = 2 * pos + 1
            if child >= k:
                break
            if child + 1 < k and heap[child + 1] < heap[child]:
                child += 1
            if heap[child] >= v:
                break
            heap[pos] = heap[child]
            pos = child
        heap[pos] = v
    return size


@njit(nogil=True, cache=True)
def accumulate(indptr, ids, weights, lut, q_idx, q_val, acc, stamp, tag, touched):
    """Add the query's postings into ``acc``; list each touched item once; return how many."""
    n_touched = 0
    for j in range(q_idx.shape[0]):
        a = q_idx[j]
        qv = q_val[j]
        for p in range(indptr[a], indptr[a + 1]):
            i = ids[p]
            if stamp[i] != tag:
                stamp[i] = tag
                acc[i] = 0.0
                touched[n_touched] = i
                n_touched += 1
            acc[i] += qv * from_bits(weights[p], lut)
    return n_touched


@njit(nogil=True, cache=True)
def accumulate_blocked(indptr, ids, weights, lut, q_idx, q_val, acc, stamp, tag, touched, cursor, block):
    """:func:`accumulate` a block of items at a time (each term's postings, ascending ids, read on from
    where the last block left them), so that the random writes into ``acc`` and ``stamp`` stay in the
    core's cache; items are listed block by block. Its loop body is :func:`accumulate`'s, written out:
    shared through an inlined helper, both ran 4 to 5 x slower (exploratory, scale-1m)."""
    n_touched = 0
    for j in range(q_idx.shape[0]):
        cursor[j] = indptr[q_idx[j]]
    for top in range(block, acc.shape[0] + block, block):
        for j in range(q_idx.shape[0]):
            qv = q_val[j]
            p, end = cursor[j], indptr[q_idx[j] + 1]
            while p < end and ids[p] < top:
                i = ids[p]
                if stamp[i] != tag:
                    stamp[i] = tag
                    acc[i] = 0.0
                    touched[n_touched] = i
                    n_touched += 1
                acc[i] += qv * from_bits(weights[p], lut)
                p += 1
            cursor[j] = p
    return n_touched


@njit(nogil=True, cache=True)
def accumulate_all(indptr, ids, weights, table, q_idx, q_val, acc):
    """Every item's score into ``acc`` (zeroed first): no record of touched items."""
    acc[:] = 0.0
    for j in range(q_idx.shape[0]):
        a = q_idx[j]
        qv = q_val[j]
        for p in range(indptr[a], indptr[a + 1]):
            acc[ids[p]] += qv * from_table(weights[p], table)


@njit(nogil=True, cache=True)
def select(acc, touched, n_touched, k, eps, heap, cand_ids, cand_scores):
    """The k-th best touched score (a size-k min-heap: most items fail one comparison), then every
    touched item within ``eps`` of it or above; returns (k-th score, candidates)."""
    size = 0
    for j in range(n_touched):
        v = acc[touched[j]]
        if size < k or v > heap[0]:
            size = push(heap, size, k, v)
    kth = heap[0]
    n_cand = 0
    for j in range(n_touched):
        i = touched[j]
        if acc[i] >= kth - eps:
            cand_ids[n_cand] = i
            cand_scores[n_cand] = acc[i]
            n_cand += 1
    return kth, n_cand


@njit(nogil=True, cache=True)
def partial(indptr, ids, weights, table, q_idx, q_val, start, stop, acc, cursor, block):
    """Add terms start..stop of the query into ``acc[:, 0]``, their weights' squares into ``acc[:, 1]``:
    a block of items at a time, each term's postings (ascending ids) read on from where the last block
    left them, so that the writes stay in the core's cache."""
    for j in range(start, stop):
        cursor[j] = indptr[q_idx[j]]
    for top in range(block, acc.shape[0] + block, block):
        for j in range(start, stop):
            qv = q_val[j]
            p, end = cursor[j], indptr[q_idx[j] + 1]
            while p < end and ids[p] < top:
                w = from_table(weights[p], table)
                i = ids[p]
                acc[i, 0] += qv * w
                acc[i, 1] += w * w
                p += 1
            cursor[j] = p


@njit(nogil=True, cache=True)
def rescore(ptr, anchors, weights, table, in_query, q_dense, cand, out):
    """Each candidate's score from its row, in ascending anchor order as the postings add it."""
    for c in range(cand.shape[0]):
        i = cand[c]
        s = np.float32(0.0)
        for p in range(ptr[i], ptr[i + 1]):
            a = anchors[p]
            if in_query[a]:
                s += q_dense[a] * from_table(weights[p], table)
        out[c] = s


@njit(nogil=True, cache=True)
def candidates(acc, norms, q_rest, low_rest, high_rest, tol, slack, k, heap, lower, upper, cand, allowed):
    """Items (among ``allowed``, a mask, unless it is empty) whose upper bound reaches the k-th best
    lower bound; returns how many. The bounds first, in a loop the compiler vectorises (one pass that
    also kept the heap and the candidates was slower)."""
    q_rest, low_rest, high_rest, tol = np.float32(q_rest), np.float32(low_rest), np.float32(high_rest), np.float32(tol)
    for i in range(acc.shape[0]):
        s = acc[i, 0]
        r = q_rest * np.sqrt(max(norms[i] - acc[i, 1], np.float32(0.0)) + tol * norms[i])
        lower[i] = max(s - r, s + low_rest)
        upper[i] = s + min(r, high_rest)
    if allowed.shape[0]:
        for i in range(acc.shape[0]):
            if not allowed[i]:
                lower[i] = -np.inf
                upper[i] = -np.inf
    size = 0
    for i in range(acc.shape[0]):
        if size < k or lower[i] > heap[0]:
            size = push(heap, size, k, lower[i])
    cut = heap[0] - slack
    count = 0
    for i in range(acc.shape[0]):
        if upper[i] >= cut:
            cand[count] = i
            count += 1
    return count
