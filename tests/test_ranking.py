import numpy as np

from retrieval.core.ranking import topk_with_ties


def test_ties_are_broken_by_secondary_not_storage_order():
    scores = np.array([0.0, 0.0, 0.9, 0.0, 0.0])
    secondary = np.array([0.1, 0.5, 0.0, 0.9, 0.3])
    ids, s, sec = topk_with_ties(scores, 3, lambda c: secondary[c])
    assert ids.tolist() == [2, 3, 1]
    np.testing.assert_allclose(sec[1:], [0.9, 0.5])


def test_result_does_not_depend_on_storage_order():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(200), 1)  # many ties
    secondary = rng.random(200)
    perm = rng.permutation(200)
    a, _, _ = topk_with_ties(scores, 15, lambda c: secondary[c])
    b, _, _ = topk_with_ties(scores[perm], 15, lambda c: secondary[perm][c])
    assert a.tolist() == perm[b].tolist()


def test_every_item_tied_with_the_kth_is_a_candidate():
    scores = np.zeros(1000)
    secondary = np.arange(1000, dtype=float)
    ids, _, _ = topk_with_ties(scores, 3, lambda c: secondary[c])
    assert ids.tolist() == [999, 998, 997]


def test_k_larger_than_n_and_empty():
    ids, s, _ = topk_with_ties(np.array([0.2, 0.7]), 10)
    assert ids.tolist() == [1, 0]
    assert topk_with_ties(np.zeros(0), 5)[0].size == 0


def test_the_secondary_score_is_asked_only_for_candidates_that_can_be_in_the_top_k():
    from retrieval.core.ranking import rank_candidates

    rng = np.random.default_rng(5)
    primary = np.round(rng.random(300), 2)  # many ties
    sec_all = rng.random(300)
    asked = []

    def secondary(c):
        asked.append(len(c))
        return sec_all[c]

    cand = np.arange(300)
    ids, s, sec = rank_candidates(cand, primary, 10, secondary)
    # what computing every candidate's secondary score gives, by a plain sort
    order = sorted(cand, key=lambda i: (-round(primary[i] / 1e-6), -round(sec_all[i] / 1e-12), i))[:10]
    assert ids.tolist() == order and np.array_equal(sec, sec_all[order])
    kth = np.sort(primary)[::-1][9]
    assert asked == [int((primary >= kth).sum())] and asked[0] < 300
