"""Every index backend passes the same tests, against a brute-force numpy answer."""

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval.core.projector import RelativeProjector
from retrieval.errors import InputError, UnknownNameError
from retrieval.indexes import BACKENDS, ExactIndex, FaissIndex, make_index

SPECS = [{"backend": "exact"}, {"backend": "faiss", "factory": "Flat"}, {"backend": "inverted", "dtype": "float32"},
         {"backend": "torch", "device": "cpu"},
         # a compressed candidate stage whose candidates are re-scored exactly
         {"backend": "faiss", "factory": "PQ4x2", "rerank": 4}]
IDS = [s["backend"] + ("-" + s["factory"] if s.get("factory", "Flat") != "Flat" else "") for s in SPECS]


def data(kind, n=300, m=20, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    anchors = rng.normal(size=(40, dim)).astype(np.float32)
    x, q = rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(m, dim)).astype(np.float32)
    if kind == "sparse":
        proj = RelativeProjector(k=8, p=3.0).fit(anchors)
        return proj.transform(x), proj.transform(q)
    return x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)


def brute(x, q):
    x = x.toarray() if sp.issparse(x) else x
    q = q.toarray() if sp.issparse(q) else q
    return q @ x.T


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_search_matches_bruteforce(spec, kind):
    x, q = data(kind)
    idx = make_index(spec).add(x)
    assert len(idx) == x.shape[0]
    ref = brute(x, q)
    secondary = np.random.default_rng(5).random(x.shape[0])
    for r, hits in enumerate(idx.search(q, 10, lambda row, c: secondary[c])):
        expected_scores = np.sort(ref[r])[::-1][:10]
        np.testing.assert_allclose(hits.scores, expected_scores, atol=1e-5)
        np.testing.assert_allclose(ref[r][hits.ids], hits.scores, atol=1e-5)
        assert len(set(hits.ids.tolist())) == 10


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_ties_broken_identically_by_every_backend(spec):
    # Sparse vectors with few anchors: most scores are exactly 0, so order depends on the tie-break.
    x, q = data("sparse", n=150, m=8)
    secondary = np.random.default_rng(1).random(x.shape[0])
    exact = ExactIndex().add(x).search(q, 10, lambda row, c: secondary[c])
    got = make_index(spec).add(x).search(q, 10, lambda row, c: secondary[c])
    for a, b in zip(exact, got):
        assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_add_in_parts_equals_add_once(spec):
    x, q = data("dense")
    whole = make_index(spec).add(x).search(q, 5)
    parts = make_index(spec).add(x[:100]).add(x[100:]).search(q, 5)
    for a, b in zip(whole, parts):
        assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_save_load_roundtrip(spec, tmp_path):
    x, q = data("sparse")
    idx = make_index(spec).add(x)
    files = idx.save(str(tmp_path), "stem")
    assert all((tmp_path / f).is_file() for f in files)
    again = make_index(spec).load(str(tmp_path), "stem", x)
    for a, b in zip(idx.search(q, 7), again.search(q, 7)):
        assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_width_mismatch_and_k_beyond_size(spec):
    x, q = data("dense", n=5)
    idx = make_index(spec).add(x)
    with pytest.raises(InputError, match="width 16"):
        idx.search(np.ones((1, 3), np.float32), 2)
    assert len(idx.search(q[:1], 50)[0].ids) == 5


def test_unknown_backend_lists_known():
    with pytest.raises(UnknownNameError, match="known: " + ", ".join(BACKENDS)):
        make_index({"backend": "annoy"})
    with pytest.raises(InputError, match="factory string"):
        FaissIndex("NotAFactory").add(np.ones((4, 4), np.float32))


@pytest.mark.gpu
def test_faiss_gpu_matches_cpu():
    faiss = pytest.importorskip("faiss")
    if not hasattr(faiss, "get_num_gpus") or faiss.get_num_gpus() == 0:
        pytest.skip("the installed faiss sees no GPU")
    x, q = data("dense", n=2000)
    cpu = FaissIndex(use_gpu=False).add(x).search(q, 10)
    gpu = FaissIndex(use_gpu=True).add(x).search(q, 10)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_inverted_float16_is_exact_for_the_weights_it_stores(tmp_path):
    from retrieval.indexes.inverted import InvertedIndex

    x, q = data("sparse", n=2000, m=30)
    idx = InvertedIndex("float16").add(x)
    stored = x.copy()
    stored.data = stored.data.astype(np.float16).astype(np.float32)
    exact = ExactIndex().add(stored).search(q, 10)
    for a, b in zip(exact, idx.search(q, 10)):
        assert a.ids.tolist() == b.ids.tolist()
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    # and against the float32 vectors: the same top 10 up to near-ties, scores within float16 rounding
    full = ExactIndex().add(x).search(q, 10)
    overlap = np.mean([len(set(a.ids.tolist()) & set(b.ids.tolist())) / 10 for a, b in zip(full, idx.search(q, 10))])
    assert overlap >= 0.95
    # 6 bytes a stored entry (int32 id + float16 weight) plus the anchor offsets
    assert idx.memory_bytes() == x.nnz * 6 + 8 * (x.shape[1] + 1)


def test_inverted_postings_are_memory_mapped_on_load(tmp_path):
    from retrieval.indexes.inverted import InvertedIndex

    x, q = data("sparse", n=500)
    idx = InvertedIndex("float16").add(x)
    files = idx.save(str(tmp_path), "rel")
    assert {"rel.ids.npy", "rel.indptr.npy", "rel.weights.npy"} <= set(files)
    again = make_index(idx.spec()).load(str(tmp_path), "rel")  # no vectors: the spec carries the item count
    assert isinstance(again.ids, np.memmap) and len(again) == 500
    for a, b in zip(idx.search(q, 10), again.search(q, 10)):
        assert a.ids.tolist() == b.ids.tolist()


def test_inverted_with_fewer_touched_items_than_k_falls_back_to_every_score():
    from retrieval.indexes.inverted import InvertedIndex

    x = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32))
    q = sp.csr_matrix(np.array([[0.0, 0.0, 1.0]], np.float32))
    secondary = np.array([0.1, 0.9, 0.5, 0.7])
    got = InvertedIndex("float32").add(x).search(q, 3, lambda r, c: secondary[c])[0]
    assert got.ids.tolist() == [2, 1, 3]  # the only match, then the untouched ones by secondary score


def test_inverted_decodes_every_float16_weight_exactly():
    from retrieval.indexes.inverted import InvertedIndex

    vals = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    vals = vals[np.isfinite(vals) & (vals != 0)]  # every finite non-zero half: normals, subnormals, both signs
    x = sp.csr_matrix((vals, (np.arange(len(vals)), np.zeros(len(vals), int))), shape=(len(vals), 2))
    hits = InvertedIndex("float16").add(x).search(sp.csr_matrix(np.array([[1.0, 0.0]], np.float32)), len(vals))[0]
    np.testing.assert_array_equal(np.sort(hits.scores), np.sort(vals))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_torch_on_cuda_matches_exact(kind):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    from retrieval.indexes import TorchIndex

    x, q = data(kind, n=5000, m=50)
    for a, b in zip(ExactIndex().add(x).search(q, 10), TorchIndex("cuda").add(x).search(q, 10)):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_rerank_turns_compressed_candidates_into_exact_scores():
    faiss = pytest.importorskip("faiss")  # noqa: F841
    x, q = data("dense", n=2000, m=30, dim=32, seed=2)
    ref = brute(x, q)
    truth = [set(np.argsort(-ref[r])[:10].tolist()) for r in range(len(q))]
    recall = {}
    for rerank in (0, 32):
        idx = make_index({"backend": "faiss", "factory": "PQ8x4", "tie_margin": 0, "rerank": rerank}).add(x)
        hits = idx.search(q, 10)
        recall[rerank] = np.mean([len(truth[r] & set(h.ids.tolist())) / 10 for r, h in enumerate(hits)])
        if rerank:  # the scores reported are the exact inner products
            for r, h in enumerate(hits):
                np.testing.assert_allclose(h.scores, ref[r][h.ids], atol=1e-5)
    assert recall[32] > recall[0] and recall[32] >= 0.9, recall
    with pytest.raises(InputError, match="rerank"):
        FaissIndex("PQ4x4", rerank=-1)
    with pytest.raises(InputError, match="enough vectors to train"):
        FaissIndex("PQ4x8").add(x[:10])


def filtered_truth(x, q, allowed, k, secondary):
    """The engine's ranking rule applied by brute force to the allowed rows only."""
    from retrieval.core.ranking import rank_candidates

    ref = brute(x, q)
    return [rank_candidates(allowed, ref[r][allowed], k, lambda c: secondary[c])[0].tolist() for r in range(len(ref))]


@pytest.mark.parametrize("selective", [0.02, 0.3, 1.0])
@pytest.mark.parametrize("spec", SPECS + [{"backend": "inverted", "dtype": "float16"}], ids=IDS + ["inverted-f16"])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_a_filter_applies_before_the_top_k_is_cut(spec, kind, selective):
    """k results whenever k rows are allowed, only allowed rows, and the brute-force answer over them
    (ties included: most sparse scores are 0, so the tie-break decides)."""
    x, q = data(kind, n=400, m=12)
    rng = np.random.default_rng(7)
    allowed = np.flatnonzero(rng.random(x.shape[0]) < selective)
    secondary = rng.random(x.shape[0])
    idx = make_index(spec).add(x)
    got = idx.search(q, 10, lambda row, c: secondary[c], allowed=allowed)
    stored = x
    if spec.get("dtype") == "float16":  # the index scores the weights it stores
        stored = sp.csr_matrix(x, dtype=np.float32)
        stored.data = stored.data.astype(np.float16).astype(np.float32)
    truth = filtered_truth(stored, q, allowed, 10, secondary)
    for hits, want in zip(got, truth):
        assert set(hits.ids.tolist()) <= set(allowed.tolist())
        assert len(hits.ids) == min(10, len(allowed))
        if spec.get("factory", "Flat") == "Flat" or spec.get("rerank"):
            assert hits.ids.tolist() == want
    assert all(len(h.ids) == 0 for h in idx.search(q, 10, allowed=np.array([], np.int64)))
    shuffled = np.concatenate([allowed[::-1], allowed[:3]])  # out of order, some twice: the same rows allowed
    again = idx.search(q, 10, lambda row, c: secondary[c], allowed=shuffled)
    assert [h.ids.tolist() for h in again] == [h.ids.tolist() for h in got]
    with pytest.raises(InputError, match="allowed row ids within"):
        idx.search(q, 10, allowed=[x.shape[0]])
    with pytest.raises(InputError, match="allowed row ids within"):
        idx.search(q, 10, allowed=[-1, 0])


def test_faiss_filters_through_its_id_selector_when_many_rows_match(monkeypatch):
    """Above EXACT_FILTER_ROWS a FAISS index filters with its own ID selector (here HNSW and IVF)."""
    from retrieval.indexes import faiss_index

    monkeypatch.setattr(faiss_index, "EXACT_FILTER_ROWS", 0)
    x, q = data("dense", n=2000, m=10)
    allowed = np.flatnonzero(np.random.default_rng(3).random(2000) < 0.5)
    truth = filtered_truth(x, q, allowed, 10, np.zeros(2000))
    for factory, params in (("HNSW16", "efSearch=128"), ("IVF16,Flat", "nprobe=16")):
        idx = FaissIndex(factory, params=params).add(x)
        got = idx.search(q, 10, allowed=allowed)
        assert all(set(h.ids.tolist()) <= set(allowed.tolist()) and len(h.ids) == 10 for h in got)
        recall = np.mean([len(set(h.ids.tolist()) & set(t)) / 10 for h, t in zip(got, truth)])
        assert recall >= 0.9, (factory, recall)
    tiny = FaissIndex("HNSW16").add(x)
    few = allowed[:3]  # a selective filter on a graph index: the rows the graph misses are scored exactly
    assert [h.ids.tolist() for h in tiny.search(q, 10, allowed=few)] == filtered_truth(x, q, few, 10, np.zeros(2000))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_inverted_dense_queries_score_bit_for_bit_as_the_touched_path(dtype, monkeypatch):
    """The dense path (no record of touched items; float16 through a table) against the touched-item
    path, forced each way: the same ids, the same float32 scores, with and without a filter."""
    from retrieval.indexes import inverted
    from retrieval.indexes.inverted import InvertedIndex

    x, q = data("sparse", n=3000, m=25)
    idx = InvertedIndex(dtype).add(x)
    secondary = np.random.default_rng(2).random(x.shape[0])
    allowed = np.sort(np.random.default_rng(3).choice(x.shape[0], 400, replace=False))
    runs = {}
    for mode, at in (("touched", np.inf), ("dense", 0.0)):
        monkeypatch.setattr(inverted, "DENSE_AT", at)
        runs[mode] = (idx.search(q, 10, lambda r, c: secondary[c]),
                      idx.search(q, 10, lambda r, c: secondary[c], allowed=allowed))
    for got, want in zip(runs["dense"], runs["touched"]):
        for a, b in zip(got, want):
            assert a.ids.tolist() == b.ids.tolist()
            np.testing.assert_array_equal(a.scores, b.scores)
    # both paths, and the choice between them, meet the exact backend
    exact = ExactIndex().add(x).search(q, 10, lambda r, c: secondary[c]) if dtype == "float32" else None
    monkeypatch.setattr(inverted, "DENSE_AT", 1.0)
    for i, hits in enumerate(idx.search(q, 10, lambda r, c: secondary[c])):
        assert hits.ids.tolist() == runs["touched"][0][i].ids.tolist()
        if exact is not None:
            assert hits.ids.tolist() == exact[i].ids.tolist()


def test_inverted_dense_path_handles_few_touched_items_and_every_half(monkeypatch):
    from retrieval.indexes import inverted

    monkeypatch.setattr(inverted, "DENSE_AT", 0.0)
    test_inverted_with_fewer_touched_items_than_k_falls_back_to_every_score()
    test_inverted_decodes_every_float16_weight_exactly()


def test_inverted_workspaces_outlive_the_threads_of_a_batch():
    """A batch's queries run on new threads each time; their score buffers are the index's, reused."""
    from retrieval.indexes.inverted import InvertedIndex

    x, q = data("sparse", n=500, m=12)
    idx = InvertedIndex("float32", threads=2).add(x)
    first = idx.search(q, 10)
    kept = {id(ws) for ws in idx._spares}
    assert 1 <= len(kept) <= 2
    again = idx.search(q, 10)
    # The first batch may have run on one thread; the second may need one more buffer, never more than threads.
    after = {id(ws) for ws in idx._spares}
    assert kept <= after and len(after) <= 2
    assert [h.ids.tolist() for h in first] == [h.ids.tolist() for h in again]


def clustered(n=4000, m=30, dim=24, seed=0):
    """Relative vectors of clustered items, with every tenth item repeated (exact ties), and queries
    near the clusters: what a bounded search prunes well."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.3 * rng.normal(size=(n, dim))
    x[::10] = x[1::10][: len(x[::10])]
    q = centres[rng.integers(0, 40, m)] + 0.3 * rng.normal(size=(m, dim))
    proj = RelativeProjector(k=24, p=2.0).fit(rng.normal(size=(96, dim)).astype(np.float32))
    return proj.transform(x.astype(np.float32)), proj.transform(q.astype(np.float32))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("block", [1 << 17, 333])
def test_inverted_bounded_search_answers_bit_for_bit_as_every_posting(dtype, signed, block, monkeypatch):
    """A dense query answered from part of its postings (retrieval/indexes/bounded.py) against the same
    index reading every posting: the same ids, float32 scores and secondary scores, ties included,
    with and without a filter (70 % and 5 % of the rows allowed); and the bounds do answer most of
    these queries (else the comparison would test nothing)."""
    from retrieval.indexes import bounded, inverted
    from retrieval.indexes.inverted import InvertedIndex

    x, q = clustered()
    if signed:  # weights and queries of both signs: the anchors' ranges bound the rest from below
        flip = np.where(np.random.default_rng(4).random(x.shape[1]) < 0.3, -1.0, 1.0)
        x, q = sp.csr_matrix(x @ sp.diags(flip)), sp.csr_matrix(q @ sp.diags(flip))
    monkeypatch.setattr(inverted, "DENSE_AT", 0.0)
    monkeypatch.setattr(bounded, "BLOCK", block)  # partial sums written a block of items at a time, or in one
    monkeypatch.setattr(bounded, "MIN_ITEMS", 0)
    answered = []
    search = bounded.search
    monkeypatch.setattr(bounded, "search", lambda *a: answered.append(search(*a)) or answered[-1])
    idx = InvertedIndex(dtype, threads=1).add(x)
    full = InvertedIndex(dtype, threads=1).add(x)
    full.bounds = None
    secondary = np.random.default_rng(2).random(x.shape[0])
    rng = np.random.default_rng(3)
    filters = [None, np.flatnonzero(rng.random(x.shape[0]) < 0.7), np.flatnonzero(rng.random(x.shape[0]) < 0.05)]
    for k in (1, 10, 50):
        for allowed in filters:
            got = idx.search(q, k, lambda r, c: secondary[c], allowed=allowed)
            for a, b in zip(got, full.search(q, k, lambda r, c: secondary[c], allowed=allowed)):
                assert a.ids.tolist() == b.ids.tolist()
                np.testing.assert_array_equal(a.scores, b.scores)
                np.testing.assert_array_equal(a.secondary, b.secondary)
                assert allowed is None or np.isin(a.ids, allowed).all()
    assert sum(found is not None for found in answered) >= len(answered) // 2, "the bounds pruned too little to test"


def test_inverted_bounds_survive_adding_in_parts_and_saving(tmp_path, monkeypatch):
    """Rows and bounds of an index built in two parts equal those built at once; they are saved,
    named in the spec, memory-mapped on load, counted in its memory; a spec without them (a collection
    written before they existed) loads without them and still answers. Kept only where they pay."""
    from retrieval.indexes import bounded

    x, q = clustered(n=1000)
    assert make_index({"backend": "inverted"}).add(x).bounds is None  # fewer items than the bounded path needs
    monkeypatch.setattr(bounded, "MIN_ITEMS", 0)
    sparse_rows = sp.random(1000, 4000, density=0.002, format="csr", dtype=np.float32, random_state=0)
    assert make_index({"backend": "inverted"}).add(sparse_rows).bounds is None  # 8^2 < 4,000 anchors: never dense
    once = make_index({"backend": "inverted"}).add(x)
    parts = make_index({"backend": "inverted"}).add(x[:300]).add(x[300:])
    for a, b in zip(once.bounds.arrays(), parts.bounds.arrays()):
        np.testing.assert_array_equal(a, b)
    assert once.spec()["bounds"] is True
    assert once.memory_bytes() == sum(a.nbytes for a in once.bounds.arrays()) + x.nnz * 6 + 8 * (x.shape[1] + 1)
    files = once.save(str(tmp_path), "stem")
    assert {f"stem.{p}.npy" for p in ("rows_ptr", "rows_anchors", "rows_weights", "norms", "ranges")} <= set(files)
    again = make_index(once.spec()).load(str(tmp_path), "stem", x)
    assert isinstance(again.bounds.weights, np.memmap)
    older = make_index({k: v for k, v in once.spec().items() if k != "bounds"}).load(str(tmp_path), "stem", x)
    assert older.bounds is None
    for a, b in zip(again.search(q, 10), older.search(q, 10)):
        assert a.ids.tolist() == b.ids.tolist()


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_adding_and_searching_leave_the_callers_matrices_as_they_were(spec):
    """float64 CSR with unsorted indices and a stored zero: scipy's float32 conversion shares the
    indices array with its input, so a backend sorting them in place scrambled the caller's queries
    (the inverted index did: the same query then answered differently the second time)."""
    x, q = data("sparse")

    def unsorted(m):
        m = sp.csr_matrix(m, dtype=np.float64)
        for r in range(m.shape[0]):  # reverse each row's entries: same matrix, indices out of order
            sl = slice(m.indptr[r], m.indptr[r + 1])
            m.indices[sl], m.data[sl] = m.indices[sl][::-1].copy(), m.data[sl][::-1].copy()
        m.has_sorted_indices = False
        m.data[0] = 0.0
        return m

    xs, qs = unsorted(x), unsorted(q)
    x_before, q_before = (xs.indices.copy(), xs.data.copy()), (qs.indices.copy(), qs.data.copy())
    idx = make_index(spec).add(xs)
    first = [h.ids.tolist() for h in idx.search(qs, 10)]
    assert [h.ids.tolist() for h in idx.search(qs, 10)] == first
    for m, (indices, values) in ((xs, x_before), (qs, q_before)):
        np.testing.assert_array_equal(m.indices, indices)
        np.testing.assert_array_equal(m.data, values)
    ref = brute(xs.toarray().astype(np.float32), qs.toarray().astype(np.float32))
    for r, ids in enumerate(first):
        np.testing.assert_allclose(np.sort(ref[r][ids])[::-1], np.sort(ref[r])[::-1][:10], atol=1e-5)


def test_inverted_kernels_are_compiled_once_across_processes(tmp_path):
    """numba's disk cache serves the kernels to the next process (closures over a decoder were compiled
    again in every process and added to the cache each time): a second process saves nothing new."""
    import os
    import subprocess
    import sys

    code = ("import numpy as np, scipy.sparse as sp\n"
            "from retrieval.indexes import bounded, inverted\n"
            "from retrieval.indexes.inverted import InvertedIndex\n"
            "bounded.MIN_ITEMS = 0\n"
            "x = sp.random(3000, 64, density=0.3, format='csr', dtype=np.float32, random_state=0)\n"
            "for dtype in ('float16', 'float32'):\n"
            "    idx = InvertedIndex(dtype, threads=1).add(x)\n"
            "    for at in (0.0, float('inf')):\n"
            "        inverted.DENSE_AT = at\n"
            "        idx.search(x[:3], 5); idx.search(x[:3], 5, allowed=np.arange(0, 3000, 2))\n"
            "    idx.bounds = None\n"
            "    inverted.DENSE_AT = 0.0\n"
            "    idx.search(x[:3], 5)\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), NUMBA_DEBUG_CACHE="1")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    assert "data saved" in runs[0].stdout + runs[0].stderr  # the first compiles and saves
    second = runs[1].stdout + runs[1].stderr
    assert "data loaded" in second and "data saved" not in second, second[-2000:]


def approximate_pair(dtype="float32", setting=None, monkeypatch=None):
    """An inverted index set to search approximately, and the same index searching exactly, over
    clustered items whose queries are dense from the first item on (the bounded path's conditions)."""
    from retrieval.indexes import bounded, inverted
    from retrieval.indexes.inverted import InvertedIndex

    monkeypatch.setattr(inverted, "DENSE_AT", 0.0)
    monkeypatch.setattr(bounded, "MIN_ITEMS", 0)
    x, q = clustered()
    approx = InvertedIndex(dtype, threads=1, approximate=setting).add(x)
    exact = InvertedIndex(dtype, threads=1).add(x)
    assert approx.bounds is not None and exact.bounds is not None
    return x, q, approx, exact


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_inverted_approximate_search_finds_most_of_the_exact_top_k_with_exact_scores(dtype, monkeypatch):
    """The heads' candidates (retrieval/indexes/heads.py) against the exact search: most of the top 10
    found, every hit's score the exact search's own score for that item, in the engine's order; and
    the approximate path did answer (a spy counts it), or the comparison would test nothing."""
    from retrieval.indexes import heads
    from retrieval.indexes.heads import Approximate

    x, q, approx, exact = approximate_pair(dtype, Approximate(terms=6, head=0.05, candidates=100), monkeypatch)
    answered = []
    search = heads.search
    monkeypatch.setattr(heads, "search", lambda *a: answered.append(search(*a)) or answered[-1])
    every = exact.search(q, x.shape[0])  # every item's exact score, to look the hits' scores up
    found = recall = 0
    for got, want, full in zip(approx.search(q, 10), exact.search(q, 10), every):
        score_of = dict(zip(full.ids.tolist(), full.scores.tolist()))
        assert [score_of[i] for i in got.ids.tolist()] == got.scores.tolist()
        assert (np.diff(got.scores) <= 0).all()
        recall += len(set(got.ids.tolist()) & set(want.ids.tolist()))
        found += 10
    assert sum(a is not None for a in answered) == q.shape[0]
    assert 0.85 <= recall / found < 1.0, recall / found  # approximate, and close: not the exact path in disguise
    allowed = np.flatnonzero(np.random.default_rng(5).random(x.shape[0]) < 0.3)  # a filter: candidates among its rows
    answered.clear()
    every = exact.search(q, len(allowed), allowed=allowed)
    recall = 0
    for got, want, full in zip(approx.search(q, 10, allowed=allowed), exact.search(q, 10, allowed=allowed), every):
        score_of = dict(zip(full.ids.tolist(), full.scores.tolist()))
        assert np.isin(got.ids, allowed).all() and [score_of[i] for i in got.ids.tolist()] == got.scores.tolist()
        recall += len(set(got.ids.tolist()) & set(want.ids.tolist()))
    assert sum(a is not None for a in answered) == q.shape[0] and 0.85 <= recall / found <= 1.0, recall / found
    approx.threads = 2  # a batch on two threads answers as each query alone
    alone = [approx.search(q[r], 10)[0] for r in range(q.shape[0])]
    assert [h.ids.tolist() for h in approx.search(q, 10)] == [h.ids.tolist() for h in alone]


def test_inverted_approximate_search_that_reads_everything_is_the_exact_search(monkeypatch):
    """Every term, every posting and every touched item rescored: the same ids, scores and secondary
    scores as the exact search, ties included, filtered or not (the approximate path answering)."""
    from retrieval.indexes import heads
    from retrieval.indexes.heads import Approximate

    x, q, approx, exact = approximate_pair("float32", Approximate(terms=10_000, head=1.0, candidates=x_rows()),
                                           monkeypatch)
    secondary = np.random.default_rng(2).random(x.shape[0])
    allowed = np.flatnonzero(np.random.default_rng(3).random(x.shape[0]) < 0.3)
    answered = []
    search = heads.search
    monkeypatch.setattr(heads, "search", lambda *a: answered.append(search(*a)) or answered[-1])
    for k in (1, 10, 50):
        for where in (None, allowed):
            for a, b in zip(approx.search(q, k, lambda r, c: secondary[c], allowed=where),
                            exact.search(q, k, lambda r, c: secondary[c], allowed=where)):
                assert a.ids.tolist() == b.ids.tolist()
                np.testing.assert_array_equal(a.scores, b.scores)
                np.testing.assert_array_equal(a.secondary, b.secondary)
    assert len(answered) == 6 * q.shape[0] and all(a is not None for a in answered)


def x_rows() -> int:
    return clustered()[0].shape[0]


def test_inverted_approximate_setting_is_checked_kept_and_changed(tmp_path, monkeypatch):
    """Settings out of range are refused with what was given; the setting survives save and load in
    the spec; a new setting remakes the heads; fewer candidates than the k asked for still answer
    approximately, with k candidates; setting it to None searches exactly again."""
    from retrieval.indexes import heads
    from retrieval.indexes.heads import Approximate

    assert Approximate(head=np.float32(0.5)).head == np.float32(0.5)  # numpy numbers are numbers
    for bad in ({"terms": 0}, {"head": 0.0}, {"head": 1.5}, {"head": True}, {"candidates": 2.5}, {"rows": 3}):
        with pytest.raises(InputError, match="expected"):
            Approximate.of(bad)
    with pytest.raises(InputError, match="TERMS,HEAD,CANDIDATES"):
        Approximate.parse("16,0.02")
    assert Approximate.parse("default") == Approximate() == Approximate.of(True)
    assert Approximate.of(None) is None and Approximate.of(False) is None
    x, q, approx, exact = approximate_pair("float16", {"terms": 4, "head": 0.05, "candidates": 30}, monkeypatch)
    assert approx.spec()["approximate"] == {"terms": 4, "head": 0.05, "candidates": 30}
    approx.save(str(tmp_path), "rel")
    loaded = make_index(approx.spec()).load(str(tmp_path), "rel")
    assert loaded.approximate == approx.approximate
    assert [h.ids.tolist() for h in loaded.search(q, 10)] == [h.ids.tolist() for h in approx.search(q, 10)]
    assert approx.search_approximately(approx.approximate) and approx._heads is not None  # made before any query
    assert approx.approximate_spec() == {"terms": 4, "head": 0.05, "candidates": 30}
    assert not exact.search_approximately(None) and exact.approximate_spec() is None
    assert not make_index({"backend": "exact"}).search_approximately(Approximate())  # exact backends stay exact
    first = approx._heads[1]
    approx.approximate = Approximate(terms=4, head=0.5, candidates=30)
    approx.search(q[:1], 10)
    assert approx._heads[1] is not first and len(approx._heads[1].ids) > len(first.ids)
    approx.approximate = Approximate(terms=4, head=0.05, candidates=5)  # fewer candidates than asked for
    answered = []
    search = heads.search
    monkeypatch.setattr(heads, "search", lambda *a: answered.append(search(*a)) or answered[-1])
    assert all(len(h.ids) == 20 for h in approx.search(q, 20)) and all(a is not None for a in answered)
    approx.approximate = None
    assert [h.ids.tolist() for h in approx.search(q, 10)] == [h.ids.tolist() for h in exact.search(q, 10)]
