"""NeighbourVotes: an input's nearest corpus items vote with their ASIF probabilities (exact checks)."""

import numpy as np
import pytest

from retrieval.core import neighbour_votes
from retrieval.core.calibration import softmax_rows, standardise_rows
from retrieval.core.neighbour_votes import CorpusNeighbours, NeighbourVotes
from retrieval.errors import InputError


def corpus(n=60, dim=8, labels=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(n, labels))


def brute_force(vectors, items, scores, m, temperature):
    """The votes written out: centre on the corpus's mean, cosines, the m best but the input itself."""
    mean = items.mean(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    sims = unit(vectors - mean) @ unit(items - mean).T
    prob = softmax_rows(standardise_rows(scores), temperature)
    out = []
    for row in sims:
        keep = [j for j in np.argsort(-row) if row[j] < 1 - 1e-5][:m]
        out.append(sum(max(row[j], 0) * prob[j] for j in keep))
    return np.array(out)


@pytest.mark.parametrize("m,temperature", [(1, 1.0), (5, 0.5), (10, 2.0)])
def test_votes_are_the_nearest_items_probabilities_weighted_by_their_cosines(m, temperature):
    items, scores = corpus()
    rng = np.random.default_rng(1)
    inputs = np.vstack([rng.normal(size=(7, 8)), items[:5]]).astype(np.float32)  # new inputs and corpus items
    votes = NeighbourVotes(m, temperature).fit(items, scores).transform(inputs)
    np.testing.assert_allclose(votes, brute_force(inputs, items, scores, m, temperature), rtol=1e-5, atol=1e-6)


def test_a_corpus_item_does_not_vote_for_itself():
    items, scores = corpus()
    vote = NeighbourVotes(1).fit(items, scores).transform(items[:1])[0]
    mean = items.mean(0)
    unit = (items - mean) / np.linalg.norm(items - mean, axis=1, keepdims=True)
    nearest = 1 + int(np.argmax(unit[1:] @ unit[0]))  # its nearest other item
    prob = softmax_rows(standardise_rows(scores), 1.0)
    np.testing.assert_allclose(vote, max(float(unit[nearest] @ unit[0]), 0) * prob[nearest], rtol=1e-5)


def test_votes_of_a_batch_are_those_of_each_input_alone_whatever_the_block(monkeypatch):
    items, scores = corpus(n=200)
    inputs = np.random.default_rng(2).normal(size=(37, 8)).astype(np.float32)
    votes = NeighbourVotes(10).fit(items, scores)
    whole = votes.transform(inputs)
    monkeypatch.setattr(neighbour_votes, "BLOCK", 4)
    np.testing.assert_array_equal(votes.transform(inputs), whole)
    np.testing.assert_array_equal(np.vstack([votes.transform(inputs[i:i + 1]) for i in range(37)]), whole)
    assert votes.transform(inputs[:0]).shape == (0, 4)
    assert votes.to_spec() == {"neighbours": 10, "temperature": 1.0}


def test_bad_settings_and_inputs_are_refused_with_what_was_given():
    items, scores = corpus(n=20)
    with pytest.raises(InputError, match="neighbours >= 1 and a temperature > 0, got 0 and 1.0"):
        NeighbourVotes(0)
    with pytest.raises(InputError, match="temperature > 0, got 5 and -1"):
        NeighbourVotes(5, -1)
    with pytest.raises(InputError, match=r"more than 30 corpus vectors .* got 20 vectors"):
        NeighbourVotes(30).fit(items, scores)
    with pytest.raises(InputError, match=r"scores of shape \(19, 4\)"):
        NeighbourVotes(5).fit(items, scores[:19])
    with pytest.raises(InputError, match="fitted on a corpus first"):
        NeighbourVotes(5).transform(items)
    with pytest.raises(InputError, match=r"width 8 \(the corpus's\), got shape \(2, 3\)"):
        NeighbourVotes(5).fit(items, scores).transform(np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"non-empty \(n, dim\) corpus, got shape \(0, 8\)"):
        CorpusNeighbours(items[:0])


def test_one_prepared_corpus_serves_every_label_set():
    items, scores = corpus(n=80)
    near = CorpusNeighbours(items)
    inputs = np.random.default_rng(3).normal(size=(9, 8)).astype(np.float32)
    for labels in (3, 5):
        shared = NeighbourVotes(7).fit(near, scores[:, :labels])
        assert shared.corpus_ is near
        np.testing.assert_array_equal(shared.transform(inputs), NeighbourVotes(7).fit(items, scores[:, :labels])
                                      .transform(inputs))


def test_copies_of_the_input_fill_no_vote_even_when_they_are_most_of_the_corpus():
    items, scores = corpus(n=12)
    items[:8] = items[0]  # eight copies of the input, four other items, five neighbours asked for
    votes = NeighbourVotes(5).fit(items, scores).transform(items[:1])
    np.testing.assert_allclose(votes, brute_force(items[:1], items, scores, 5, 1.0), rtol=1e-5, atol=1e-6)
    assert np.isfinite(votes).all()
