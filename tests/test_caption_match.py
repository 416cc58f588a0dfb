"""The caption match: text queries find partly captioned collections' items by their own captions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retrieval.core import caption_match
from retrieval.core.caption_match import MAX_THRESHOLD, MIN_THRESHOLD, CaptionMatch, promote, threshold

CAPTIONS = ["1 japanese yen", "100 japanese yen", "a red apple", "a penguin waving", "a red apple"]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def fitted():
    vecs = unit(np.random.default_rng(0).normal(size=(len(CAPTIONS), 16)))
    vecs[4] = vecs[2]  # the same caption twice: the same vector
    return vecs, CaptionMatch.fit(vecs, CAPTIONS, [3, 4, 7, 9, 11])


def test_a_caption_repeated_as_the_query_promotes_its_items_only(fitted):
    vecs, cm = fitted
    m = cm.match(vecs[[0, 2]], ["1 japanese yen", "A red   APPLE"])
    assert m[0].rows.tolist() == [3] and m[0].how == ["caption"]  # "1" is a word: 100 yen is not promoted
    assert sorted(m[1].rows.tolist()) == [7, 11] and m[1].how == ["caption", "caption"]


def test_every_query_word_in_a_caption_promotes_it_after_the_cosine_matches(fitted):
    vecs, cm = fitted
    far = unit(-vecs[:1])  # no caption near it: only the words can match
    m = cm.match(far, ["yen"])[0]
    assert sorted(m.rows.tolist()) == [3, 4] and m.how == ["keywords", "keywords"]
    assert cm.match(far, ["yen dollar"])[0].rows.tolist() == []  # one word missing: no match
    assert cm.match(far, None)[0].rows.tolist() == []  # vectors only: no words to match


def test_kept_word_scores_answer_as_bm25_does_and_stay_bounded(fitted, monkeypatch):
    vecs, cm = fitted
    words = [["yen"], ["japanese", "yen"], ["red", "apple"], ["yen"], ["penguin"]]
    first = [cm._keywords(w) for w in words]
    for w, (hit, score) in zip(words, first):  # what BM25 itself gives, word by word
        per_word = np.vstack([cm.bm25.get_scores([x]) for x in sorted(set(w))])
        assert np.array_equal(hit, (per_word > 0).all(axis=0)) and np.array_equal(score, per_word.sum(axis=0))
    assert cm._scores.cache_info().hits >= 1  # "yen" asked again was kept
    kept = cm._word_scores("yen")
    with pytest.raises(ValueError):
        kept[0] = 1.0  # a kept vector is read-only: no caller can change another query's scores
    monkeypatch.setattr(caption_match, "WORD_CACHE_BYTES", 0)
    small = CaptionMatch.fit(vecs, CAPTIONS, [3, 4, 7, 9, 11])
    for w in ["yen", "japanese", "red", "apple", "penguin"] * 5:
        small._word_scores(w)
    assert small._scores.cache_info().maxsize == 16  # the floor, whatever the budget


def test_a_filter_keeps_promoted_items_to_the_rows_it_allows(fitted):
    vecs, cm = fitted
    assert cm.match(vecs[[2]], ["a red apple"], allowed=np.array([11, 3]))[0].rows.tolist() == [11]


def test_the_threshold_is_how_close_different_captions_come_clipped():
    rng = np.random.default_rng(1)
    apart = unit(rng.normal(size=(50, 64)))  # nearly orthogonal: the floor
    assert threshold(apart, [f"c{i}" for i in range(50)]) == MIN_THRESHOLD
    near = unit(np.ones((50, 64)) + 0.001 * rng.normal(size=(50, 64)))  # all but identical: the ceiling
    assert threshold(near, [f"c{i}" for i in range(50)]) == MAX_THRESHOLD
    mid = unit(np.ones((50, 64)) + 0.25 * rng.normal(size=(50, 64)))
    t = threshold(mid, [f"c{i}" for i in range(50)])
    nearest = np.sort(mid @ mid.T, axis=1)[:, -2]
    assert MIN_THRESHOLD <= t <= MAX_THRESHOLD and t == pytest.approx(np.clip(np.percentile(nearest, 99),
                                                                              MIN_THRESHOLD, MAX_THRESHOLD))
    assert threshold(apart[:3], ["same", "same", "same"]) == MIN_THRESHOLD  # one distinct caption


def test_promote_puts_matches_first_and_keeps_the_rest_in_route_order(fitted):
    vecs, cm = fitted
    m = cm.match(vecs[[2]], ["a red apple"])[0]
    ids, scores, sec, how = promote(m, np.array([5, 11, 2, 6]), np.array([.9, .8, .7, .6]), np.full(4, .1), 4)
    assert ids.tolist()[:2] in ([7, 11], [11, 7]) and ids.tolist()[2:] == [5, 2]
    assert how == ["caption", "caption", None, None] and np.isnan(sec[:2]).all() and scores[2] == .9
    assert promote(m, np.array([5]), np.array([.9]), np.array([.1]), 1)[0].tolist() in ([7], [11])


def _partly_captioned(tiny_data, fake_encoders, tmp_path, **kw):
    """tiny_data with one item's caption a word no anchor has: only its caption can find it."""
    from retrieval import Collection, build_collection

    (tiny_data["root"] / "corpus" / "green.txt").write_text("zork quux", encoding="utf-8")
    (tiny_data["root"] / "corpus" / "red.txt").unlink()
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", image_encoder="fake-image",
                           text_encoder="fake-text", k=3, p=2.0, cache_dir=str(tmp_path / "cache"), **kw)
    return Collection.open(out)


def test_a_collection_finds_an_item_first_by_its_own_caption(tiny_data, fake_encoders, tmp_path):
    col = _partly_captioned(tiny_data, fake_encoders, tmp_path)
    green = col.item_ids[[i for i, p in enumerate(col.items["path"]) if p.endswith("green.png")][0]]
    hit = col.search("zork quux", k=3)[0]
    assert (hit.id, hit.matched, hit.score) == (green, "caption", pytest.approx(1.0))
    assert col.search("quux", k=3)[0].matched == "keywords"  # one word of it: a keyword match
    assert all(h.matched is None for h in col.search("zork quux", k=3, captions=False))
    assert all(h.matched is None for h in col.search("zork quux", k=3)[1:])  # the others by the route
    assert green not in [h.id for h in col.search("zork quux", k=3, where="path != 'none'",
                                                  captions=True)[1:]]  # promoted once
    p = col.plan("text")
    assert p.captions and "match the items' own captions" in p.explain()
    assert not col.plan("text", captions=False).captions and not col.plan("image").captions
    assert not col.plan("text", "text").captions  # texts as the target: nothing to promote
    assert col.search("zork quux", k=3, target="text")[0].matched is None


def test_the_cli_marks_caption_matches_and_can_turn_them_off(tiny_data, fake_encoders, tmp_path, capsys):
    from retrieval.cli.main import main

    col = _partly_captioned(tiny_data, fake_encoders, tmp_path)
    assert main(["search", str(col.folder), "zork quux", "-k", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["results"]["image"][0]
    assert first["matched"] == "caption" and first["path"].endswith("green.png")
    assert main(["search", str(col.folder), "zork quux", "-k", "2", "--json", "--no-caption-match"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["image"][0]["matched"] is None
    assert main(["search", str(col.folder), "zork quux", "-k", "2"]) == 0
    assert "   1= " in capsys.readouterr().out
    assert main(["explain", str(col.folder), "zork quux"]) == 0
    assert "item captions" in capsys.readouterr().out
