"""The dense-index planner is pure: estimates and choices, no FAISS."""

import pytest

from retrieval.errors import InputError
from retrieval.indexes.budget import RERANK, options, parse_size, plan_dense


def test_sizes():
    assert parse_size("4G") == 4 << 30 and parse_size("500MB") == 500 << 20 and parse_size(1024) == 1024
    assert parse_size(None) is None
    for bad in ("lots", "-1G", "4Q", "0"):
        with pytest.raises(InputError, match="expected a memory size"):
            parse_size(bad)


def test_most_exact_option_within_budget():
    assert plan_dense(10_000, 384).chosen.factory == "Flat"  # no budget: exact
    assert plan_dense(1_000_000, 384, max_query_ms=5).chosen.factory == "HNSW32"  # Flat is ~38 ms by estimate
    small = plan_dense(1_000_000, 384, max_memory="1G")  # Flat needs 1.5 GB; only PQ codes fit
    assert small.chosen.factory.endswith("PQ64") and small.chosen.est_bytes <= 1 << 30
    assert "<- chosen" in small.explain()


def test_estimates_grow_with_size_and_order_is_most_exact_first():
    a, b = options(100_000, 384), options(1_000_000, 384)
    assert [o.factory.split(",")[0].rstrip("0123456789") for o in a] == ["Flat", "HNSW", "IVF", "IVF"]
    assert all(y.est_bytes > x.est_bytes for x, y in zip(a, b))
    assert a[0].exact and not a[1].exact


def test_nothing_fits_lists_every_option():
    with pytest.raises(InputError, match=r"(?s)none fits by estimate:\n.*Flat.*HNSW32.*IVF"):
        plan_dense(1_000_000, 384, max_memory="1M", max_query_ms=0.001)
    with pytest.raises(InputError, match="max_query_ms > 0"):
        plan_dense(10, 4, max_query_ms=0)


def test_only_the_compressed_option_re_ranks():
    opts = options(1_000_000, 384)
    assert [o.rerank for o in opts] == [0, 0, 0, RERANK] and RERANK > 1
    assert f"x{RERANK}" in plan_dense(1_000_000, 384, max_memory="100M").explain()
