"""Self-anchoring (retrieval/build/self_anchors.py): captioned corpus items join the given anchors,
which are first moved to the corpus's domain; kept unless validation on those captions says it loses.
A build does exactly what the module says (its relative vectors equal the recipe's projector fitted
on the moved anchors by hand), reanchor and reencode make it again, stitching moves the stored rows
as the build did, and the decision is the validation's."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.api import reanchor
from retrieval.build import self_anchors as S
from retrieval.build.anchors import AnchorSet
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import recipe
from retrieval.cli.main import main
from retrieval.core.projector import fit_projector
from tests.test_reencode import rotated  # noqa: F401  (a fixture)

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background="none")


def corpus_of(captions, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = [{"path": f"item{i}", "caption": c} for i, c in enumerate(captions)]
    captioned = [i for i, c in enumerate(captions) if c and c.strip()]
    return S.Corpus(rows, rng.normal(size=(len(rows), dim)).astype(np.float32), captioned,
                    rng.normal(size=(len(captioned), dim)).astype(np.float32))


def test_repeated_captions_and_those_of_given_anchors_are_skipped_and_counted():
    corpus = corpus_of(["a red square", "blue box", " Blue   BOX ", "", "green box", "   "])
    chosen, skipped = S.pairs(corpus, ["a red square", "a yellow square"])
    assert [corpus.rows[corpus.captioned[j]]["caption"] for j in chosen] == ["blue box", "green box"]
    assert skipped == {"repeated": 2, "over_max": 0}


def test_at_most_max_self_items_become_anchors_chosen_by_caption(monkeypatch):
    monkeypatch.setattr(S, "MAX_SELF", 3)
    corpus = corpus_of([f"thing {i}" for i in range(10)])
    chosen, skipped = S.pairs(corpus, [])
    again, _ = S.pairs(corpus_of([f"thing {i}" for i in reversed(range(10))]), [])
    assert len(chosen) == 3 and skipped["over_max"] == 7
    # the same captions in the same order whatever the corpus's row order
    assert [f"thing {i}" for i in chosen] == [f"thing {9 - j}" for j in again]


def test_the_given_anchors_move_to_the_corpus_means_and_the_own_pairs_follow_unchanged():
    rng = np.random.default_rng(1)
    a_med, a_txt = rng.normal(3.0, 1, (20, 5)).astype(np.float32), rng.normal(-2.0, 1, (20, 6)).astype(np.float32)
    s_med, s_txt = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(7, 6)).astype(np.float32)
    mean = rng.normal(size=5)
    med, txt = S.merged(a_med, a_txt, s_med, s_txt, mean)
    np.testing.assert_allclose(med[:20].mean(0), mean, atol=1e-5)
    np.testing.assert_allclose(txt[:20].mean(0), s_txt.mean(0), atol=1e-5)
    np.testing.assert_allclose(med[:20] - med[:20].mean(0), a_med - a_med.mean(0), atol=1e-5)  # moved, not reshaped
    np.testing.assert_array_equal(med[20:], s_med)
    np.testing.assert_array_equal(txt[20:], s_txt)


def test_a_build_relativises_against_the_moved_anchors_and_the_captioned_items(tiny_data, fake_encoders, tmp_path):
    from retrieval.encoders import load_encoder
    from retrieval.store.arrow import sparse_from_columns

    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", k=3, p=2.0,
                                           **FAKE))
    a, n = col.manifest["anchors"], len(tiny_data["colours"])
    assert a["count"] == 2 * n and a["self"]["count"] == n and a["self"]["kept"]
    assert a["self"]["why"].startswith("kept unvalidated")  # 8 captions: fewer than MIN_VALIDATED
    stored = pq.read_table(col.folder / "anchors.parquet")
    captions = stored.column("caption").to_pylist()
    assert captions[:n] == [f"a {c} square" for c in tiny_data["colours"]]
    assert sorted(captions[n:]) == sorted(f"{c} box" for c in tiny_data["colours"])
    # by hand: the given anchors' encodings moved to the corpus's means, then the items and their captions
    img, txt = load_encoder("fake-image", "image"), load_encoder("fake-text", "text")
    items = np.asarray(col.sides["image"].abs, np.float32)
    own = [list(col.items["caption"]).index(c) for c in captions[n:]]
    med, tx = S.merged(img.encode(tiny_data["anchor_images"]), txt.encode(captions[:n]), items[own],
                       txt.encode(captions[n:]), items.mean(0, dtype=np.float64))
    np.testing.assert_allclose(np.asarray(stored.column("image_vector").to_pylist(), np.float32), med, atol=1e-5)
    np.testing.assert_allclose(np.asarray(stored.column("text_vector").to_pylist(), np.float32), tx, atol=1e-5)
    expected = fit_projector(col.manifest["projectors"]["image"], med).transform(items).toarray()
    t = pq.read_table(col.folder / "items.parquet")
    rel = sparse_from_columns(t.column("rel_indices"), t.column("rel_values"), 2 * n).toarray()
    np.testing.assert_allclose(rel, expected, atol=1e-5)


def test_off_it_builds_as_before(tiny_data, fake_encoders, tmp_path):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", k=3, p=2.0,
                                           self_anchors=False, **FAKE))
    assert col.manifest["anchors"]["count"] == len(tiny_data["colours"]) and "self" not in col.manifest["anchors"]


def test_validation_decides_and_its_record_says_so(tiny_data, fake_encoders, tmp_path, monkeypatch):
    monkeypatch.setattr(S, "MIN_VALIDATED", 4)
    losing = {"folds": 4, "queries": 8, "alone": 0.9, "self": 0.5, "gain": -0.4, "se": 0.1}
    monkeypatch.setattr(S, "validate", lambda *a, **k: dict(losing))
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "lost", k=3, p=2.0,
                                           **FAKE))
    own = col.manifest["anchors"]["self"]
    assert own["kept"] is False and own["why"] == "lost on validation" and own["validation"] == losing
    assert col.manifest["anchors"]["count"] == len(tiny_data["colours"])
    monkeypatch.setattr(S, "validate", lambda *a, **k: dict(losing, gain=-0.05, se=0.1))  # within the noise: kept
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "kept", k=3, p=2.0,
                                           **FAKE))
    assert col.manifest["anchors"]["self"]["why"] == "kept by validation"


def test_validation_finds_what_the_corpus_pairs_add_across_a_domain_gap():
    """Synthetic: concepts seen through two encoders; the given anchors' domain is offset from the
    corpus's on both sides and its concepts vary along 4 of the 16 directions the corpus's do. The
    corpus pairs find held-out captions better than the given anchors alone, and validation says so."""
    rng = np.random.default_rng(3)
    d, rot = 16, np.linalg.qr(rng.normal(size=(16, 16)))[0].astype(np.float32)

    def views(z, offset_med, offset_txt):
        return ((z + offset_med + 0.6 * rng.normal(size=z.shape)).astype(np.float32),
                ((z @ rot) + offset_txt + 0.6 * rng.normal(size=z.shape)).astype(np.float32))

    z_given = rng.normal(size=(300, d))
    z_given[:, 4:] *= 0.2
    g_med, g_txt = views(z_given, 4.0 * rng.normal(size=d), 4.0 * rng.normal(size=d))
    items, caps = views(rng.normal(size=(400, d)), 0.0, 0.0)
    corpus = S.Corpus([{"path": f"i{i}", "caption": f"concept {i}"} for i in range(400)], items, list(range(200)),
                      caps[:200])
    given = AnchorSet([f"g{i}" for i in range(300)], [f"g {i}" for i in range(300)], vectors={"image": g_med})
    rec = recipe(given, None, BuildOptions())
    v = S.validate((g_med, g_txt), corpus, np.arange(200), lambda n: S.resized(rec, n, given, BuildOptions(), None),
                   None)
    assert v["queries"] == 200 and v["gain"] > 3 * v["se"] > 0, v


@pytest.mark.usefixtures("rotated")
def test_reanchor_and_reencode_make_the_corpus_pairs_again(tiny_data, tmp_path):
    from retrieval.api import reencode

    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "old", k=3, p=2.0, **FAKE)
    fresh = Collection.open(old)
    again = Collection.open(reanchor(old, tiny_data["anchors"], tmp_path / "again", cache_dir=""))
    assert again.manifest["anchors"]["self"]["count"] == fresh.manifest["anchors"]["self"]["count"]
    assert again.manifest["anchors"]["count"] == fresh.manifest["anchors"]["count"]
    np.testing.assert_allclose(np.asarray(pq.read_table(again.folder / "anchors.parquet").column("image_vector")
                                          .to_pylist()), np.asarray(pq.read_table(fresh.folder / "anchors.parquet")
                                                                   .column("image_vector").to_pylist()), atol=1e-6)
    off = Collection.open(reanchor(old, tiny_data["anchors"], tmp_path / "off", cache_dir="", self_anchors=False))
    assert off.manifest["anchors"]["count"] == len(tiny_data["colours"]) and "self" not in off.manifest["anchors"]
    # a reencode encodes the given anchors again, not the corpus's rows as if they were given ones
    re = Collection.open(reencode(old, tmp_path / "re", image_encoder="fake-image-rotated", cache_dir=""))
    assert re.manifest["anchors"]["count"] == fresh.manifest["anchors"]["count"]
    assert re.manifest["anchors"]["self"]["count"] == len(tiny_data["colours"])


def test_a_captioned_item_is_found_first_by_its_own_caption_and_info_says_what_joined(tiny_data, fake_encoders,
                                                                                         tmp_path, capsys):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", k=3, p=2.0,
                                           **FAKE))
    for c in tiny_data["colours"]:
        assert col.search(f"{c} box", k=1)[0].caption == f"{c} box"
    # the texts are the corpus's captions and the given anchors' once each, not the joined ones twice
    assert col.manifest["counts"]["texts"] == 2 * len(tiny_data["colours"])
    assert main(["info", str(col.folder)]) == 0
    out = capsys.readouterr().out
    assert "self-anchors 8 of 8 captioned items joined the anchors" in out
    assert main(["info", str(col.folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["anchors"]["self"]["kept"] is True


def test_stitched_encoders_reach_a_self_anchored_collection_as_its_own_do(tiny_data, fake_encoders, tmp_path):
    """Every item is captioned here, so the captioned items' mean is the corpus's: stitching through
    a rotation (image) or a scaling (text) gives exactly the build's answers."""
    from tests.test_stitching import RotatedImage, ShiftedText

    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", k=3, p=2.0, **FAKE)
    plain = Collection.open(out)
    assert plain.manifest["anchors"]["self"]["kept"]
    text, image = Collection.open(out, text_encoder=ShiftedText()), Collection.open(out, image_encoder=RotatedImage())
    for q in ("a red square", "green", "a blue box"):
        assert [h.id for h in text.search(q, k=3, route="relative")] == \
            [h.id for h in plain.search(q, k=3, route="relative")]
    for img in tiny_data["corpus_images"]:
        want, got = (c.search(img, k=4, target="text", route="relative") for c in (plain, image))
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)


def test_the_captions_suite_scores_each_row_on_the_uncaptioned_items_only():
    """The suite's draw on synthetic vectors: every row has one R@10 per uncaptioned item, and the
    self-anchoring row is the build's (kept here: 40 captions of a corpus offset from its anchors)."""
    from retrieval.evaluation.suites import captions as C

    rng = np.random.default_rng(5)
    z = rng.normal(size=(200, 8))
    texts, images = (z + 0.3 * rng.normal(size=z.shape)).astype(np.float32), (z + 2.0).astype(np.float32)
    given = C.Anchors("synthetic", rng.normal(size=(64, 8)).astype(np.float32),
                      rng.normal(size=(64, 8)).astype(np.float32) + 5.0)
    captioned = np.arange(0, 200, 5)
    out = C.one_draw(given, (texts, images, [f"thing {i}" for i in range(200)]), captioned,
                     lambda rows: np.zeros((len(rows), 200), np.float32))
    assert all(len(out[r]) == 160 for r in C.ROWS) and len(out["own caption R@1"]) == 40
    assert out["kept"].tolist() == [True]
    assert all(0.0 <= out[r].min() and out[r].max() <= 1.0 for r in C.ROWS)


def test_sound_collections_self_anchor_only_when_asked(tone_data, fake_encoders, tmp_path):
    """Sounds measured a little lower with it (scripts/self_anchor_sounds.py): off unless asked for."""
    kw = dict(text_encoder="fake-text", audio_encoder="fake-audio", cache_dir="", k=3, p=2.0)
    plain = Collection.open(build_collection(tone_data["corpus"], tone_data["anchors"], tmp_path / "plain", **kw))
    assert "self" not in plain.manifest["anchors"] and plain.manifest["counts"]["corpus_captions"] > 0
    asked = Collection.open(build_collection(tone_data["corpus"], tone_data["anchors"], tmp_path / "asked",
                                             self_anchors=True, **kw))
    own = asked.manifest["anchors"]["self"]
    assert own["kept"] and asked.manifest["anchors"]["count"] == plain.manifest["anchors"]["count"] + own["count"]


def test_explain_names_the_corpus_pairs_among_the_anchors(tiny_data, fake_encoders, tmp_path):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", k=3, p=2.0,
                                           **FAKE))
    assert "and 8 captioned corpus items" in col.plan("text").explain()
