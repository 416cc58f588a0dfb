import itertools

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes

from retrieval.core.metrics import lexicographic, retrieval_metrics
from retrieval.core.translation import Translator
from retrieval.errors import InputError


def brute_expected(scores, targets, k):
    """Average over every order of the tied items, literally."""
    rec, rr = [], []
    for row, t in zip(scores, targets):
        tied = [i for i in range(len(row)) if row[i] == row[t]]
        greater = sum(v > row[t] for v in row)
        ranks = []
        for perm in itertools.permutations(tied):
            ranks.append(greater + perm.index(t) + 1)
        rec.append(np.mean([r <= k for r in ranks]))
        rr.append(np.mean([1 / r for r in ranks]))
    return np.mean(rec), np.mean(rr)


def test_fair_ties_match_averaging_over_all_orders():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(30, 7)).astype(float)  # lots of ties
    targets = rng.integers(0, 7, size=30)
    for k in (1, 2, 5):
        got = retrieval_metrics(scores, targets, ks=(k,))
        want_r, want_mrr = brute_expected(scores, targets, k)
        assert got[f"R@{k}"] == pytest.approx(want_r)
        assert got["MRR"] == pytest.approx(want_mrr)


def test_all_tied_is_chance_not_perfect():
    m = retrieval_metrics(np.zeros((4, 100)), [0, 5, 50, 99], ks=(10,))
    assert m["R@10"] == pytest.approx(0.10) and m["tied"] == 1.0


def test_lexicographic_orders_like_the_engine():
    primary = np.array([0.5, 0.5, 0.7, 0.0])
    secondary = np.array([0.1, 0.9, -1.0, 1.0])
    assert np.argsort(-lexicographic(primary, secondary)).tolist() == [2, 1, 0, 3]


def test_orthogonal_recovers_a_rotation_and_agrees_with_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    t = Translator("orthogonal", standardize=False).fit(x, x @ q)
    np.testing.assert_allclose(t.weight_, q, atol=1e-8)
    y = rng.normal(size=(200, 6))
    r, _ = orthogonal_procrustes(x, y)
    np.testing.assert_allclose(Translator("orthogonal", standardize=False).fit(x, y).weight_, r, atol=1e-8)


def test_different_widths_zero_padding_and_affine_recovers_affine_map():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 4))
    w, b = rng.normal(size=(4, 9)), rng.normal(size=9)
    y = x @ w + b
    for method in ("linear", "affine"):
        t = Translator(method).fit(x, y)
        np.testing.assert_allclose(t.transform(x), y, atol=1e-4)
    t = Translator("orthogonal").fit(x, y)
    assert t.transform(x[:3]).shape == (3, 9)


def test_translator_errors():
    with pytest.raises(InputError, match="translation method"):
        Translator("magic").fit(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(InputError, match="same number"):
        Translator().fit(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(InputError, match="not fitted"):
        Translator().transform(np.ones((1, 2)))
    with pytest.raises(InputError, match="width 2"):
        Translator().fit(np.random.rand(5, 2), np.random.rand(5, 3)).transform(np.ones((1, 4)))


@pytest.mark.parametrize("method", ["orthogonal", "linear", "affine"])
def test_saved_and_loaded_translators_give_identical_outputs(method, tmp_path):
    from retrieval.store.bridges import load_translator, save_translator

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(80, 5)), rng.normal(size=(80, 7))
    t = Translator(method).fit(x, y)
    save_translator(t, str(tmp_path / "t.parquet"))
    again = load_translator(str(tmp_path / "t.parquet"))
    np.testing.assert_array_equal(t.transform(x[:10]), again.transform(x[:10]))
    assert again.get_params() == t.get_params()


def test_loading_something_else_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval.store.bridges import load_translator

    pq.write_table(pa.table({"a": [1]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match="translator file written by retrieval"):
        load_translator(str(tmp_path / "x.parquet"))


def test_scaled_coordinates_are_unit_rows_of_the_standardised_target():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(60, 4)), rng.normal(size=(60, 6)) * 3 + 1
    t = Translator("orthogonal").fit(x, y)
    ys = (y - y.mean(0)) / (y.std(0) + 1e-8)
    np.testing.assert_allclose(t.scale_target(y), ys / np.linalg.norm(ys, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(t.transform_scaled(x[:5]), t.scale_target(t.transform(x[:5])), atol=1e-6)


@pytest.mark.parametrize("widths", [(6, 3), (3, 6)])
def test_orthogonal_map_keeps_only_the_block_it_uses(widths, tmp_path):
    """The map is fitted between zero-padded square spaces; only its dim_in x dim_out block can touch a
    padded input or a cut output, so that is all it keeps (and files of the full square still load)."""
    from retrieval.store.bridges import load_translator, save_translator

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(40, widths[0])), rng.normal(size=(40, widths[1]))
    t = Translator("orthogonal").fit(x, y)
    assert t.weight_.shape == widths
    w = max(widths)
    xs = np.pad((x - x.mean(0)) / (x.std(0) + 1e-8), ((0, 0), (0, w - widths[0])))
    ys = np.pad((y - y.mean(0)) / (y.std(0) + 1e-8), ((0, 0), (0, w - widths[1])))
    u, _, vt = np.linalg.svd(xs.T @ ys)
    full = (xs[:5] @ (u @ vt))[:, : widths[1]] * (y.std(0) + 1e-8) + y.mean(0)
    np.testing.assert_allclose(t.transform(x[:5]), full, atol=1e-5)
    t.weight_ = u @ vt  # as collections wrote it before
    save_translator(t, str(tmp_path / "old.parquet"))
    old = load_translator(str(tmp_path / "old.parquet"))
    assert old.weight_.shape == widths
    np.testing.assert_allclose(old.transform(x[:5]), full, atol=1e-5)


def test_orthogonal_map_with_fewer_anchors_than_dimensions_is_determined_by_the_anchors():
    """Rank-deficient anchors leave some directions unconstrained; they map to zero instead of to a
    rotation LAPACK happens to pick, and the anchors' own span is still mapped isometrically."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(10, 30)), rng.normal(size=(10, 20))
    t = Translator("orthogonal").fit(x, y)
    xs = (x - x.mean(0)) / (x.std(0) + 1e-8)
    null = np.linalg.svd(xs)[2][10:]  # directions no (centred) anchor has any component along
    np.testing.assert_allclose(null @ t.weight_, 0, atol=1e-8)
    sv = np.linalg.svd(t.weight_, compute_uv=False)
    assert np.sum(sv > 0.5) == np.linalg.matrix_rank(xs.T @ ((y - y.mean(0)) / (y.std(0) + 1e-8)))
    np.testing.assert_allclose(sv[sv > 0.5], 1, atol=1e-8)
