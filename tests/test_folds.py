"""Validation folds over anchor concepts (retrieval/core/folds.py): the split every suite's figures
rest on, so it must be concept-disjoint, a partition, and the same on every machine and run."""

import numpy as np

from retrieval.core.folds import concept_split, stable_hash, validation_folds


def test_the_hash_is_pinned():
    # every committed suite result was split with it: a change here would move every figure
    assert stable_hash("cat") == 0.6156100363004953
    assert stable_hash("validation:cat") == 0.06681739445775747


def test_a_split_is_a_concept_disjoint_partition():
    names = [f"concept {i % 150}" for i in range(600)]  # four rows per concept
    anchor, query, folds = concept_split(names, 4, salt="s")
    assert sorted(np.concatenate([anchor, query]).tolist()) == list(range(600))
    assert not {names[i] for i in anchor} & {names[i] for i in query}
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == sorted(anchor.tolist())  # every anchor row is held out exactly once
    for fit, out in folds:
        assert not {names[i] for i in fit} & {names[i] for i in out}
        assert sorted(np.concatenate([fit, out]).tolist()) == sorted(anchor.tolist())
    assert 0.4 < len(anchor) / 600 < 0.6 and all(len(h) > 30 for _, h in folds)


def test_the_salt_gives_another_split_and_the_same_salt_the_same():
    names = [f"n{i}" for i in range(200)]
    a1, _, _ = concept_split(names, 4, salt="x")
    a2, _, _ = concept_split(names, 4, salt="x")
    a3, _, _ = concept_split(names, 4, salt="y")
    assert np.array_equal(a1, a2) and not np.array_equal(a1, a3)


def test_the_suites_split_with_it():
    from retrieval.evaluation.harness import FOLDS, emoji_splits
    from retrieval.evaluation.suites.pictures import split

    names = [f"thing {i}" for i in range(300)]
    e = emoji_splits(names)
    anchor, query, folds = concept_split(names, FOLDS)
    assert np.array_equal(e["anchor"], anchor) and np.array_equal(e["query"], query)
    assert all(np.array_equal(x, y) for f, g in zip(e["folds"], folds) for x, y in zip(f, g))
    p = split(names, "tuxpaint")
    assert np.array_equal(p[0], concept_split(names, FOLDS, "tuxpaint")[0])
    assert np.array_equal(validation_folds(names, p[0], FOLDS, "tuxpaint")[1][1], p[2][1][1])
