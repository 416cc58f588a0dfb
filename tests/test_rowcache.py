"""The cache of items' dense relative vectors: it returns what computing them gives, stays within its
budget, and leaves every search answer as it was without it."""

import time

import numpy as np
import pytest

from retrieval import Collection
from retrieval.core.rowcache import RowCache


def test_rows_are_computed_once_and_the_budget_holds():
    table = np.arange(40, dtype=np.float64).reshape(10, 4)
    asked = []

    def compute(ids):
        asked.append(ids.tolist())
        return table[ids] * 2

    cache = RowCache(compute, max_bytes=3 * 4 * 8)  # three rows
    np.testing.assert_array_equal(cache([4, 1, 4]), table[[4, 1, 4]] * 2)
    np.testing.assert_array_equal(cache([1, 2]), table[[1, 2]] * 2)
    assert asked == [[1, 4], [2]] and (cache.hits, cache.misses) == (2, 3)  # 4 twice in one call: computed once
    cache([7])  # a fourth row: the least recently used (4) goes
    assert sorted(cache._rows) == [1, 2, 7] and cache._bytes == 3 * 32
    assert all(r.base is None for r in cache._rows.values())  # owned rows, not views holding a batch alive
    cache([4])
    assert asked[-1] == [4] and cache([]).shape == (0, 4)
    assert RowCache(compute, max_bytes=0)([3]).tolist() == [(table[3] * 2).tolist()]  # budget 0: nothing kept


def test_filling_computes_every_row_once_in_blocks_when_they_fit():
    table = np.arange(40, dtype=np.float64).reshape(10, 4)
    asked = []

    def compute(ids):
        asked.append(ids.tolist())
        return table[ids] * 2

    cache = RowCache(compute, max_bytes=10 * 4 * 8, n_rows=10)
    assert cache.fill(block=4)
    assert asked == [[0], [1, 2, 3], [4, 5, 6, 7], [8, 9]]  # the first row computed to see the width
    np.testing.assert_array_equal(cache([9, 0, 5]), table[[9, 0, 5]] * 2)
    assert len(asked) == 4 and cache.fill() and len(asked) == 4  # nothing computed again
    too_small = RowCache(compute, max_bytes=9 * 4 * 8, n_rows=10)
    assert not too_small.fill() and asked[-1] == [0]  # one row computed to learn that they do not fit
    assert not RowCache(compute, n_rows=0).fill()


def test_a_served_collection_fills_its_tie_break_rows_when_warmed(tiny_collection):
    pytest.importorskip("fastapi")
    from retrieval.serve.server import opener

    col = opener(str(tiny_collection), lambda *a: None, "c", device="cpu", warm=True, shard_actors=None,
                 query_encoders=None, dense_cache_mb=None)()

    def filled():
        return set(col._dense_cache) == set(col.sides) and all(
            c._have is not None and c._have.all() for c in col._dense_cache.values())
    deadline = time.monotonic() + 30
    while not filled() and time.monotonic() < deadline:  # in the background: the server answers meanwhile
        time.sleep(0.02)
    assert filled()


def test_a_row_kept_meanwhile_by_another_caller_is_not_replaced():
    table = np.arange(40, dtype=np.float64).reshape(10, 4)
    times = {"n": 2}

    def compute(ids):
        out = table[ids] * times["n"]
        if len(ids) > 1 and times["n"] == 2:  # the fill's block: meanwhile a query keeps row 5, made otherwise
            times["n"] = 5
            cache([5])
            times["n"] = 2
        return out

    cache = RowCache(compute, n_rows=10)
    assert cache.fill()
    np.testing.assert_array_equal(cache([0, 5, 6]), table[[0, 5, 6]] * [[2], [5], [2]])
    times["n"] = 7
    np.testing.assert_array_equal(cache([5, 9]), table[[5, 9]] * [[5], [2]])  # kept: never computed again


def test_search_answers_are_the_same_with_and_without_the_cache(tiny_collection):
    plain, cached = Collection.open(tiny_collection), Collection.open(tiny_collection)
    plain.dense_cache_bytes = 0
    queries = ["a red square", "blue", "a green box", "yellow thing", "red", "a box"]
    for route in (None, "relative"):
        for _ in range(2):  # the second time from the cache
            got = cached.search_many(queries, k=5, route=route)
            want = plain.search_many(queries, k=5, route=route)
            for g, w in zip(got, want):
                assert [h.id for h in g] == [h.id for h in w]
                np.testing.assert_allclose([h.secondary for h in g], [h.secondary for h in w], rtol=1e-12)
    assert cached._dense_cache["image"].hits > 0 and plain._dense_cache["image"]._bytes == 0


def test_rows_that_all_fit_are_held_in_one_array():
    table = np.arange(40, dtype=np.float64).reshape(10, 4)
    asked = []

    def compute(ids):
        asked.append(np.asarray(ids).tolist())
        return table[ids] * 2

    cache = RowCache(compute, max_bytes=10 * 4 * 8, n_rows=10)
    np.testing.assert_array_equal(cache([4, 1, 4]), table[[4, 1, 4]] * 2)
    np.testing.assert_array_equal(cache([1, 2]), table[[1, 2]] * 2)
    assert cache._slab is not None and cache._slab.shape == (10, 4)
    assert asked == [[4], [1], [2]] and cache.misses == 3  # the first row computed to see the width is kept
    small = RowCache(compute, max_bytes=9 * 4 * 8, n_rows=10)  # all ten do not fit: rows kept one by one
    asked.clear()
    np.testing.assert_array_equal(small([3, 5]), table[[3, 5]] * 2)
    assert small._slab is None and sorted(small._rows) == [3, 5]
    np.testing.assert_array_equal(small([6, 3]), table[[6, 3]] * 2)
    assert asked == [[3], [3, 5], [6]]  # one row computed to see they do not fit, the first time only
