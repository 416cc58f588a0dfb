import numpy as np
import pytest
import scipy.sparse as sp

from retrieval.core.projector import RelativeProjector
from retrieval.core.relative import asif_topk, cosine_relative
from retrieval.errors import InputError


def reference_asif(x, anchors, k, p):
    """Brute force, one row at a time, straight from the ASIF recipe."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    a = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    out = np.zeros((len(x), len(a)))
    for i, row in enumerate(x @ a.T):
        keep = np.argsort(-row, kind="stable")[:k]
        v = np.zeros(len(a))
        v[keep] = np.maximum(row[keep], 0) ** p
        n = np.linalg.norm(v)
        out[i] = v / n if n > 0 else v
    return out


@pytest.mark.parametrize("k,p", [(1, 1.0), (5, 3.0), (16, 8.0), (40, 2.0)])
def test_asif_matches_bruteforce_reference(k, p):
    rng = np.random.default_rng(0)
    anchors, x = rng.normal(size=(40, 12)), rng.normal(size=(25, 12))
    got = RelativeProjector(k=k, p=p).fit(anchors).transform(x)
    assert sp.isspmatrix_csr(got) and got.dtype == np.float32
    np.testing.assert_allclose(got.toarray(), reference_asif(x, anchors, k, p), atol=1e-5)
    assert (np.diff(got.indptr) <= k).all()


def test_tied_anchors_do_not_depend_on_the_batch():
    anchors = np.eye(4, dtype=np.float32)
    x = np.array([[0.8, 0.4, 0.4, 0.2]], np.float32)  # anchors 1 and 2 tie for the 2nd place
    others = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    proj = RelativeProjector(k=2, p=1.0).fit(anchors)
    alone = proj.transform(x).toarray()
    batched = proj.transform(np.vstack([others, x, others])).toarray()[50]
    np.testing.assert_array_equal(alone[0], batched)
    assert alone[0, 1] > 0 and alone[0, 2] == 0  # the lower anchor index wins the tie
    rowwise = proj.transform_rows(np.vstack([others, x]))
    np.testing.assert_array_equal(rowwise[50].toarray()[0], alone[0])
    np.testing.assert_array_equal(rowwise[:50].toarray(), np.vstack([proj.transform(o[None]).toarray() for o in others]))


@pytest.mark.parametrize("params", [dict(k=3, p=2.0), dict(k=5, p=8.0, center=True, whiten=0.5),
                                    dict(k=4, p=3.0, center=True, background=10, background_weight=0.3)])
def test_the_queries_dense_rows_do_not_depend_on_the_batch(params):
    """dense_rows (the tie-break of served queries) takes one float64 product for all rows: each row
    equals the row computed alone within far less than the tie-break's tolerance, and dense's values."""
    from retrieval.core.ranking import SECONDARY_EPS

    rng = np.random.default_rng(11)
    anchors, x = rng.normal(size=(60, 16)).astype(np.float32), rng.normal(size=(33, 16)).astype(np.float32)
    proj = RelativeProjector(**params).fit(anchors)
    rows = proj.dense_rows(x)
    assert rows.dtype == np.float64 and rows.shape == proj.dense(x).shape  # a bank's anchors are not in it
    alone = np.vstack([proj.dense_rows(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(rows, alone, rtol=0, atol=SECONDARY_EPS / 100)
    np.testing.assert_allclose(rows, proj.dense(x, np.float64), atol=1e-6)


def test_blocked_transform_equals_single_block():
    rng = np.random.default_rng(1)
    proj = RelativeProjector(k=7, p=4.0).fit(rng.normal(size=(30, 8)))
    x = rng.normal(size=(101, 8)).astype(np.float32)
    np.testing.assert_allclose(proj.transform(x, block=10).toarray(), proj.transform(x, block=1000).toarray(), atol=1e-6)


def test_negative_similarities_are_clamped_to_zero_rows():
    anchors = np.eye(3, dtype=np.float32)
    out = asif_topk(-np.ones((1, 3), np.float32), k=2, p=1.0)
    assert out.nnz == 0  # nothing positive: the row matches nothing rather than becoming NaN
    assert RelativeProjector(k=3, p=1.0).fit(anchors).transform(np.array([[-1.0, -1.0, -1.0]])).nnz == 0


def test_cosine_kind_is_dense_normalised_similarity():
    rng = np.random.default_rng(2)
    anchors, x = rng.normal(size=(10, 5)), rng.normal(size=(4, 5))
    got = RelativeProjector(k=1, kind="cosine").fit(anchors).transform(x)
    a = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    ref = x @ a.T
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(cosine_relative(x, a), ref, atol=1e-5)


def test_errors_say_expected_and_received():
    with pytest.raises(InputError, match=r"k <= number of anchors \(3\), got k=4"):
        RelativeProjector(k=4).fit(np.eye(3))
    with pytest.raises(InputError, match="width 3"):
        RelativeProjector(k=2).fit(np.eye(3)).transform(np.ones((2, 5)))
    with pytest.raises(InputError, match="not fitted"):
        RelativeProjector().transform(np.ones((1, 3)))
    with pytest.raises(InputError, match="power p > 0"):
        RelativeProjector(k=1, p=0).fit(np.eye(3))
    with pytest.raises(InputError, match="kind"):
        RelativeProjector(kind="nope").fit(np.eye(3))


def test_centring_subtracts_the_anchor_mean_before_cosine():
    rng = np.random.default_rng(4)
    anchors = rng.random((30, 6)) + 2.0  # all-positive with a big shared direction, like CNN features
    x = rng.random((5, 6)) + 2.0
    proj = RelativeProjector(k=30, p=1.0, kind="cosine", center=True).fit(anchors)
    unit = anchors / np.linalg.norm(anchors, axis=1, keepdims=True)
    mu = unit.mean(0)

    def prep(v):
        v = v / np.linalg.norm(v, axis=1, keepdims=True) - mu
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    ref = prep(x) @ prep(anchors).T
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(proj.transform(x), ref, atol=1e-5)
    np.testing.assert_allclose(proj.dense(x), ref, atol=1e-5)
    asif = RelativeProjector(k=5, p=3.0, center=True).fit(anchors).transform(x)
    np.testing.assert_allclose(asif.toarray(), reference_asif(prep(x), prep(anchors), 5, 3.0), atol=1e-5)
    assert proj.get_params()["center"] is True


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("select", ["heap", "faiss", "torch"])
def test_fused_selections_equal_numpy_selection(center, select):
    rng = np.random.default_rng(3)
    anchors, x = rng.normal(size=(3000, 48)).astype(np.float32), rng.normal(size=(500, 48)).astype(np.float32)
    a = RelativeProjector(k=40, p=4.0, center=center, select="numpy").fit(anchors).transform(x)
    b = RelativeProjector(k=40, p=4.0, center=center, select=select).fit(anchors).transform(x)
    assert (a.indices == b.indices).all() and (a.indptr == b.indptr).all()
    np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-6)


def test_heap_path_over_many_row_blocks_on_threads_equals_numpy(monkeypatch):
    # small blocks so that rows spread over worker threads and columns end in a partial block
    import retrieval.core.engines as rel

    monkeypatch.setattr(rel, "HEAP_BLOCK", 37)
    monkeypatch.setattr(rel, "HEAP_COLS", 256)
    monkeypatch.setattr(rel.os, "cpu_count", lambda: 3)
    rng = np.random.default_rng(5)
    anchors, x = rng.normal(size=(1000, 32)).astype(np.float32), rng.normal(size=(200, 32)).astype(np.float32)
    a = RelativeProjector(k=20, p=4.0, select="numpy").fit(anchors).transform(x)
    b = RelativeProjector(k=20, p=4.0, select="heap").fit(anchors).transform(x)
    assert b.shape == a.shape and (a.indices == b.indices).all() and (a.indptr == b.indptr).all()
    np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-6)


def test_heap_selection_keeps_the_lowest_anchor_among_ties():
    # duplicated anchors tie exactly; like the numpy path, the heap keeps the lowest numbers
    rng = np.random.default_rng(4)
    base = rng.normal(size=(50, 16)).astype(np.float32)
    anchors = np.vstack([base, base, base])
    x = rng.normal(size=(30, 16)).astype(np.float32)
    for k in (1, 7, 50, 149):
        a = RelativeProjector(k=k, p=2.0, select="numpy").fit(anchors).transform(x)
        b = RelativeProjector(k=k, p=2.0, select="heap").fit(anchors).transform(x)
        assert (a.indices == b.indices).all(), k
    with pytest.raises(InputError, match="select in"):
        RelativeProjector(select="gpu").fit(anchors)


@pytest.mark.gpu
def test_torch_selection_on_cuda_equals_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    rng = np.random.default_rng(3)
    anchors, x = rng.normal(size=(20000, 384)).astype(np.float32), rng.normal(size=(500, 384)).astype(np.float32)
    a = RelativeProjector(k=64, p=4.0, select="numpy").fit(anchors).transform(x)
    b = RelativeProjector(k=64, p=4.0, select="torch", device="cuda").fit(anchors).transform(x)
    assert np.mean(a.indices == b.indices) > 0.999


def test_hnsw_selection_finds_most_of_the_true_top_k():
    rng = np.random.default_rng(5)
    anchors, x = rng.normal(size=(5000, 32)).astype(np.float32), rng.normal(size=(200, 32)).astype(np.float32)
    exact = RelativeProjector(k=20, p=4.0, select="numpy").fit(anchors).transform(x)
    approx = RelativeProjector(k=20, p=4.0, select="hnsw").fit(anchors).transform(x)
    recall = np.mean([len(set(exact[i].indices) & set(approx[i].indices)) / 20 for i in range(200)])
    assert 0.9 <= recall <= 1.0
    assert (np.diff(approx.indptr) == 20).all() and np.all(np.diff(approx.indices.reshape(200, 20), axis=1) > 0)


@pytest.mark.parametrize("params", [dict(center=True), dict(whiten=9.0)])
def test_centring_inputs_on_the_anchors_own_mean_changes_nothing(params):
    rng = np.random.default_rng(3)
    anchors, x = rng.normal(size=(80, 16)).astype(np.float32), rng.normal(size=(7, 16)).astype(np.float32)
    proj = RelativeProjector(k=8, p=2.0, **params).fit(anchors)
    own = proj.input_mean(anchors)
    again = proj.centred_on(own)
    assert np.allclose(again.transform(x).toarray(), proj.transform(x).toarray(), atol=1e-5)
    assert np.allclose(again.dense(x), proj.dense(x), atol=1e-5)


def test_with_a_background_bank_both_blocks_centre_inputs_on_the_given_mean():
    rng = np.random.default_rng(6)
    proj = RelativeProjector(k=8, center=True, background=20).fit(rng.normal(size=(80, 16)).astype(np.float32))
    mean = rng.normal(size=16).astype(np.float32)
    def centres(projector):  # each block's centring step: the bank is a named block of its own
        return [next(s for s in chain.steps if s.name == "centre") for chain in projector.blocks.values()]

    assert set(proj.projector_.blocks) == {"anchors", "bank"}
    assert all(np.array_equal(c.mean_, mean) for c in centres(proj.centred_on(mean)))
    assert not any(np.array_equal(c.mean_, mean) for c in centres(proj.projector_))


def test_inputs_centred_on_their_own_mean_undo_a_domain_offset():
    """Inputs = anchors' twins plus one shared offset (another 'domain'): centred on the anchors' mean
    they all lean on the same anchors; centred on their own mean each finds its twin again."""
    rng = np.random.default_rng(4)
    anchors = rng.normal(size=(60, 32)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    inputs = anchors + 3.0 * rng.normal(size=32).astype(np.float32)
    proj = RelativeProjector(k=1, p=1.0, center=True).fit(anchors)
    nearest = proj.transform(inputs).toarray().argmax(1)
    recentred = proj.centred_on(proj.input_mean(inputs)).transform(inputs).toarray().argmax(1)
    assert np.mean(nearest == np.arange(60)) < 0.5
    assert np.mean(recentred == np.arange(60)) > 0.95
    # the anchors themselves are untouched: the copy shares them, the original keeps its own mean
    assert np.array_equal(proj.transform(anchors).toarray().argmax(1), np.arange(60))


def test_input_mean_is_the_mean_of_unit_rows_in_blocks():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 8)).astype(np.float32) * rng.uniform(0.1, 9, size=(50, 1)).astype(np.float32)
    proj = RelativeProjector(k=4, center=True).fit(rng.normal(size=(20, 8)).astype(np.float32))
    want = (x / np.linalg.norm(x, axis=1, keepdims=True)).mean(0)
    assert np.allclose(proj.input_mean(x, block=7), want, atol=1e-6)


def test_centring_errors_say_expected_and_received():
    proj = RelativeProjector(k=2, center=True)
    with pytest.raises(InputError, match="not fitted"):
        proj.centred_on(np.zeros(4, np.float32))
    proj.fit(np.eye(4, dtype=np.float32))
    with pytest.raises(InputError, match="width 4.*shape \\(3,\\)"):
        proj.centred_on(np.zeros(3, np.float32))
    with pytest.raises(InputError, match="at least one vector"):
        proj.input_mean(np.zeros((0, 4), np.float32))
    with pytest.raises(InputError, match="width 4"):
        proj.input_mean(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("params", [dict(k=3, p=2.0), dict(k=5, p=8.0, center=True, whiten=0.5),
                                    dict(k=4, p=3.0, center=True, background=10, background_weight=0.3)])
@pytest.mark.parametrize("shape", [(40, 6, 1), (700, 384, None)])
def test_rows_at_once_equal_rows_one_by_one(params, shape):
    """Queries are relativised a row at a time (batch-independent); preparing the rows together where
    the steps allow it, a stack of one-row products, and selecting the anchors for all rows at once must
    give exactly those rows, ties included (small rounded vectors: ties at the k-th; an encoder's width
    and a real number of anchors: the BLAS kernels a served query meets)."""
    from retrieval.core.step import transform_rows

    n_anchors, width, decimals = shape
    rng = np.random.default_rng(7)
    anchors, x = rng.normal(size=(n_anchors, width)), rng.normal(size=(30, width))
    if decimals is not None:
        anchors, x = np.round(anchors, decimals), np.round(x, decimals)
    anchors, x = anchors.astype(np.float32), x.astype(np.float32)
    proj = RelativeProjector(**params).fit(anchors)._fitted()
    fast, slow = proj.transform_rows(x), transform_rows(proj, x)
    assert (fast != slow).nnz == 0 and fast.dtype == slow.dtype == np.float32
    np.testing.assert_array_equal(fast.indptr, slow.indptr)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_array_equal(fast.data, slow.data)
