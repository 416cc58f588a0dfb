"""Anchor rarity: the step, the weights learnt from a corpus, and a build that asks for them."""

import numpy as np
import pytest
import scipy.sparse as sp

from retrieval import Collection, build_collection
from retrieval.build import rarity as R
from retrieval.build.options import BuildOptions
from retrieval.build.reanchor import reanchor
from retrieval.core.projector import fit_projector
from retrieval.core.rarity import Rarity, rarity_weights
from retrieval.core.step import Chain
from retrieval.encoders import load_encoder
from retrieval.errors import CollectionFormatError, InputError

KW = dict(image_encoder="fake-image", text_encoder="fake-text", k=3, p=2.0, cache_dir="", labels=False)
CHAIN = [{"step": "unit"}, {"step": "asif", "k": 4, "p": 2.0}]


def test_an_anchor_every_item_keeps_weighs_one_and_rarer_ones_more():
    rel = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]], np.float32))
    w = rarity_weights(rel, 1.0)
    assert w[0] == pytest.approx(1.0)
    assert w[3] > w[1] > w[0] and w[1] == w[2]
    np.testing.assert_allclose(rarity_weights(rel, 2.0), w ** 2)
    np.testing.assert_allclose(rarity_weights(rel.toarray(), 1.0), w)
    assert np.all(rarity_weights(rel, 0.0) == 1.0)
    with pytest.raises(InputError, match="rarity power >= 0"):
        rarity_weights(rel, -1.0)


def test_the_step_reweighs_columns_keeps_rows_unit_and_round_trips_its_spec():
    step = Rarity([1.0, 2.0, 4.0])
    rel = sp.csr_matrix(np.array([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]], np.float32))
    out = step.transform(rel).toarray()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    assert out[0, 1] / out[0, 0] == pytest.approx(2 * 0.8 / 0.6, rel=1e-5)
    np.testing.assert_allclose(step.transform(rel.toarray()), out, rtol=1e-6)
    assert Rarity.from_spec(step.to_spec()).weights == step.weights
    for bad in ([], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(CollectionFormatError, match="rarity weights"):
            Rarity(bad)


def test_a_chain_runs_the_step_after_its_relativiser_and_checks_its_width():
    rng = np.random.default_rng(0)
    anchors, x = rng.normal(size=(12, 5)).astype(np.float32), rng.normal(size=(9, 5)).astype(np.float32)
    plain = fit_projector(CHAIN, anchors)
    w = rarity_weights(plain.transform(x), 1.0)
    weighted = fit_projector(CHAIN + [Rarity(w).to_spec()], anchors)
    expected = Rarity(w).transform(plain.transform(x)).toarray()
    np.testing.assert_allclose(weighted.transform(x).toarray(), expected, atol=1e-6)
    np.testing.assert_allclose(weighted.transform_rows(x).toarray(), expected, atol=1e-6)
    np.testing.assert_allclose(weighted.finish(plain.transform(x)).toarray(), expected, atol=1e-6)
    np.testing.assert_allclose(weighted.dense(x), plain.dense(x))  # the tie-break is untouched
    with pytest.raises(InputError, match="one rarity weight per anchor"):
        fit_projector(CHAIN + [Rarity(w[:-1]).to_spec()], anchors)
    with pytest.raises(InputError, match="only steps that reweight"):
        Chain([weighted.steps[1], weighted.steps[0]])


def test_blocks_finish_relative_vectors_made_without_their_weights_as_transform_makes_them():
    rng = np.random.default_rng(1)
    a, bank, x = (rng.normal(size=(n, 6)).astype(np.float32) for n in (10, 7, 20))
    bank_chain = [{"step": "unit"}, {"step": "asif", "k": 3, "p": 2.0}]

    def blocks(main, side):
        return {"step": "blocks", "blocks": {"anchors": main, "bank": side}, "weights": {"anchors": 1.0, "bank": 0.3}}

    plain = fit_projector(blocks(CHAIN, bank_chain), a, bank=bank)
    spec, record = R.weighted_specs({"image": blocks(CHAIN, bank_chain), "text": blocks(CHAIN, bank_chain)}, "image",
                                    plain, x, 1.0, plain.transform(x))
    assert record["applied"] is False and "fewer than 200" in record["why"]
    R.MIN_ITEMS, kept = 5, R.MIN_ITEMS
    try:
        spec, record = R.weighted_specs({"image": blocks(CHAIN, bank_chain), "text": blocks(CHAIN, bank_chain)},
                                        "image", plain, x, 1.0)
    finally:
        R.MIN_ITEMS = kept
    assert record["applied"] and record["items"] == 20
    assert [s["step"] for s in spec["image"]["blocks"]["bank"]][-1] == "rarity"
    assert "rarity" not in str(spec["text"])
    weighted = fit_projector(spec["image"], a, bank=bank)
    np.testing.assert_allclose(weighted.finish(plain.transform(x)).toarray(), weighted.transform(x).toarray(), atol=1e-6)


@pytest.fixture
def few_enough(monkeypatch):
    monkeypatch.setattr(R, "MIN_ITEMS", 3)


def test_a_build_weighs_its_items_anchors_and_answers_with_them(tiny_data, fake_encoders, tmp_path, few_enough):
    plain = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "plain",
                                             background="none", **KW))
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "rare",
                                           background="none", anchor_rarity=1.0, **KW))
    record = col.manifest["anchor_rarity"]
    assert record["applied"] and record["power"] == 1.0 and record["items"] == len(tiny_data["colours"])
    specs = col.manifest["projectors"]
    assert specs["image"][-1]["step"] == "rarity" and specs["text"][-1]["step"] != "rarity"
    assert col.info()["anchor_rarity"] == record
    # the weights are the corpus's, and a text query meets the items as the weighted projectors score them
    anchors, items = col.anchor_vectors, np.asarray(col.sides["image"].abs)
    unweighted = fit_projector(plain.manifest["projectors"]["image"], anchors["image"])
    np.testing.assert_allclose(specs["image"][-1]["weights"], rarity_weights(unweighted.transform(items), 1.0),
                               rtol=1e-5)
    med, txt = (fit_projector(specs[m], anchors[m]) for m in ("image", "text"))
    query = f"a {tiny_data['colours'][0]} thing"
    q = txt.transform(load_encoder("fake-text", "text").encode([query]))
    scores = (q @ med.transform(items).T).toarray()[0]
    hits = col.search(query, k=3, route="relative")
    row = {p: i for i, p in enumerate(col.items["path"])}
    np.testing.assert_allclose([h.score for h in hits], [scores[row[h.path]] for h in hits], atol=1e-5)
    assert hits[0].score == pytest.approx(scores.max(), abs=1e-5)
    assert "rarity" not in plain.manifest and "rarity" not in str(plain.manifest["projectors"])


def test_a_corpus_too_small_is_left_unweighted_and_says_why(tiny_data, fake_encoders, tmp_path):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c",
                                           background="none", anchor_rarity=1.0, **KW))
    assert col.manifest["anchor_rarity"]["applied"] is False
    assert "fewer than 200" in col.manifest["anchor_rarity"]["why"]
    assert "rarity" not in str(col.manifest["projectors"])


def test_reanchor_keeps_the_power_and_learns_the_weights_again(tiny_data, fake_encoders, tmp_path, few_enough):
    built = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", background="none",
                             anchor_rarity=2.0, **KW)
    again = Collection.open(reanchor(built, tiny_data["anchors"], tmp_path / "again", k=3, p=2.0))
    assert again.manifest["anchor_rarity"]["power"] == 2.0
    assert again.manifest["projectors"] == Collection.open(built).manifest["projectors"]
    off = Collection.open(reanchor(built, tiny_data["anchors"], tmp_path / "off", k=3, p=2.0, anchor_rarity=0.0))
    assert "anchor_rarity" not in off.manifest


def test_bad_powers_and_sharded_builds_are_refused_before_anything_is_encoded():
    from retrieval.build.options import default_rarity

    for bad in (-1.0, float("inf"), "1", True):
        with pytest.raises(InputError, match="anchor rarity power"):
            default_rarity(bad)
    assert default_rarity(None) == 0.0
    with pytest.raises(InputError, match="anchor-rarity"):
        BuildOptions(anchor_rarity=1.0).check_sharded()


def test_the_crossdomain_suite_scores_as_a_build_and_leaves_small_corpora_unweighted():
    """The suite's rows on synthetic vectors: one R@10 per query, the rarity row the build's step (it
    changes the scores of a corpus of 250 items and nothing below the minimum)."""
    from retrieval.build.options import BuildOptions
    from retrieval.build.recipe import AnchorShape, recipe
    from retrieval.evaluation.suites import captions as C
    from retrieval.evaluation.suites import crossdomain as X

    rng = np.random.default_rng(3)
    vec = lambda n, shift=0.0: (rng.normal(size=(n, 8)) + shift).astype(np.float32)  # noqa: E731
    given = C.Anchors("synthetic", vec(80), vec(80, 1.0), (vec(40), vec(40, 1.0)))
    z = rng.normal(size=(250, 8))
    q, g = (z + 0.3 * rng.normal(size=z.shape)).astype(np.float32), (z + 2.0).astype(np.float32)
    no_labels = lambda x: np.zeros((len(x), 250), np.float32)  # noqa: E731
    rows = X.regime(given, q, g, no_labels)
    assert list(rows) == list(X.ROWS) and all(len(v) == 250 and set(np.unique(v)) <= {0.0, 1.0} for v in rows.values())
    shape = AnchorShape(80, "image")
    plain, rare = (X.build_scores(recipe(shape, None, BuildOptions(anchor_rarity=r)), given, q, g, no_labels)
                   for r in (0.0, X.RARITY))
    assert not np.allclose(plain, rare)
    small = X.regime(given, q[:150], g[:150], lambda x: np.zeros((len(x), 150), np.float32))
    np.testing.assert_array_equal(small[X.ROWS[1]], small[X.ROWS[2]])
