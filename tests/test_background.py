"""Background anchor banks (retrieval/build/background.py): the projector's block maths, builds that
store a bank, and what opens, adds, reencodes and refuses with one."""

import json

import numpy as np
import pytest

from retrieval.core.projector import RelativeProjector
from retrieval.errors import InputError
from tests.conftest import flat


def vectors(n, d, seed):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32) + 0.5


@pytest.mark.parametrize("kind", ["asif", "cosine"])
def test_scores_are_the_own_score_plus_weight_times_the_bank_score(kind):
    own, bank, x, y = vectors(40, 6, 0), vectors(30, 6, 1), vectors(5, 6, 2), vectors(7, 6, 3)
    kw = dict(p=2.0, center=True, whiten=3.0, kind=kind)
    both = RelativeProjector(k=8, background=30, background_weight=1.5, **kw).fit(np.vstack([own, bank]))
    a, b = RelativeProjector(k=8, **kw).fit(own), RelativeProjector(k=8, **kw).fit(bank)

    def inner(p, q):
        s = p @ q.T
        return s.toarray() if hasattr(s, "toarray") else s

    want = inner(a.transform(x), a.transform(y)) + 1.5 * inner(b.transform(x), b.transform(y))
    np.testing.assert_allclose(inner(both.transform(x), both.transform(y)), want, atol=1e-5)
    assert both.transform(x).shape == (5, 70)
    np.testing.assert_allclose(both.dense(x), a.dense(x), atol=1e-6)  # the secondary: own anchors only
    rows = both.transform_rows(x)
    np.testing.assert_allclose(inner(rows, rows), inner(both.transform(x), both.transform(x)), atol=1e-5)


def test_a_small_bank_caps_its_own_k_and_params_round_trip():
    own, bank, x = vectors(40, 6, 4), vectors(5, 6, 5), vectors(3, 6, 6)
    p = RelativeProjector(k=8, p=2.0, center=True, background=5, background_weight=0.5).fit(np.vstack([own, bank]))
    kept = (p.transform(x)[:, 40:] != 0).sum(1)
    assert 0 < kept.max() <= 5  # the bank's block keeps min(k, 5) (fewer where centred cosines are negative)
    params = p.get_params()
    assert params["background"] == 5 and params["background_weight"] == 0.5
    again = RelativeProjector(**params).fit(np.vstack([own, bank])).transform(x)
    assert abs(again - p.transform(x)).max() == 0
    assert "background" not in RelativeProjector(k=8).get_params()  # manifests without a bank, as before


@pytest.mark.parametrize("bad, match", [(dict(background=40), "background bank of 0 to 39"),
                                        (dict(background=-1), "background bank"),
                                        (dict(background=10, background_weight=-1.0), "background weight"),
                                        (dict(background=10, background_weight=float("nan")), "background weight"),
                                        (dict(background=35, k=8), "k <= number of anchors without the background")])
def test_bad_bank_settings_are_refused_with_what_was_expected(bad, match):
    kw = dict(dict(k=3), **bad)
    with pytest.raises(InputError, match=match):
        RelativeProjector(**kw).fit(vectors(40, 4, 7))


KW = dict(image_encoder="fake-image", text_encoder="fake-text", k=3, p=2.0, self_anchors=False)  # the corpus's own pairs (test_self_anchors.py) would join the anchors


def test_a_build_stores_the_bank_after_the_anchors_and_answers_with_it(tiny_data, fake_encoders, bank_table, tmp_path):
    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.store.arrow import sparse_from_columns

    n = len(tiny_data["colours"])
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "bg", background=bank_table,
                           background_weight=0.8, cache_dir=str(tmp_path / "cache"), **KW)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 7
    assert flat(m)["background"] == n and flat(m)["background_weight"] == 0.8
    assert m["anchors"]["count"] == n and m["anchors"]["background"]["count"] == n
    assert m["anchors"]["background"]["source"] == bank_table
    anchors = pq.read_table(out / "anchors.parquet")
    assert anchors.num_rows == 2 * n and anchors.column("caption").to_pylist()[n:] == [f"{c} paint" for c in
                                                                                       tiny_data["colours"]]
    col = Collection.open(out)
    assert not any(t.endswith(" paint") for t in col.texts["text"])  # the bank's captions are not searchable
    table = pq.read_table(out / "items.parquet")
    stored = sparse_from_columns(table.column("rel_indices"), table.column("rel_values"), 2 * n)
    again = col.projectors["image"].transform(np.asarray(col.sides["image"].abs))
    assert abs(again - stored).max() < 1e-6 and stored[:, n:].nnz > 0
    for c in tiny_data["colours"]:
        assert col.search(f"a {c} square", k=1)[0].path.endswith(f"{c}.png")


def test_the_bank_changes_the_scores_by_its_weight(tiny_data, fake_encoders, bank_table, tmp_path):
    from retrieval import Collection, build_collection

    kw = dict(KW, cache_dir=str(tmp_path / "cache"))
    none = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "a",
                                            background="none", **kw))
    bg = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b",
                                          background=bank_table, background_weight=2.0, **kw))
    hits_none = {h.id: h.score for h in none.search("a red square", k=8, route="relative")}
    hits_bg = {h.id: h.score for h in bg.search("a red square", k=8, route="relative")}
    assert hits_none.keys() == hits_bg.keys()
    assert max(hits_bg.values()) > max(hits_none.values())  # own block plus 2 x the bank's: above 1 where both agree


def test_added_items_match_a_fresh_build_with_the_bank(tiny_data, fake_encoders, bank_table, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.api import add_items
    from retrieval.store.arrow import sparse_from_columns

    kw = dict(KW, cache_dir=str(tmp_path / "cache"), background=bank_table)
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", **kw)
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(tiny_data["anchor_images"][0], more / "late-red.png")
    add_items(out, str(more))
    both = tmp_path / "both"
    shutil.copytree(tiny_data["corpus"], both)
    shutil.copy(tiny_data["anchor_images"][0], both / "late-red.png")
    fresh = build_collection(str(both), tiny_data["anchors"], tmp_path / "fresh", **kw)

    def vectors_by_path(folder):
        t = pq.read_table(folder / "items.parquet")
        rel = sparse_from_columns(t.column("rel_indices"), t.column("rel_values"), 2 * len(tiny_data["colours"]))
        return {p.split("/")[-1]: rel[i].toarray() for i, p in enumerate(t.column("path").to_pylist())}

    added, built = vectors_by_path(out), vectors_by_path(fresh)
    assert added.keys() == built.keys() and "late-red.png" in added
    for name in added:
        np.testing.assert_allclose(added[name], built[name], atol=1e-6)
    assert Collection.open(out).search("a red square", k=1)[0].path.endswith("red.png")


def test_reencode_keeps_the_bank_it_was_built_with(tiny_data, fake_encoders, bank_table, tmp_path):
    from retrieval import build_collection
    from retrieval.api import reencode

    reencode_src = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col",
                                    background=bank_table, background_weight=0.7, cache_dir=str(tmp_path / "cache"),
                                    **KW)
    out = reencode(reencode_src, tmp_path / "re", image_encoder="fake-labelled-image")
    m = json.loads((out / "manifest.json").read_text())
    assert m["anchors"]["background"]["source"] == bank_table and flat(m)["background_weight"] == 0.7
    assert m["encoders"]["image"]["spec"] == "fake-labelled-image"


def test_default_bank_follows_the_anchors_and_the_environment(tiny_data, monkeypatch):
    from retrieval.build import background as bg
    from retrieval.build.anchors import AnchorSet, load_anchor_set

    single = load_anchor_set(tiny_data["anchors"])
    assert bg.default_spec(single, None) == "none"  # the test session's RETRIEVAL_BACKGROUND
    monkeypatch.delenv(bg.ENV)
    assert bg.default_spec(single, None) == "emoji"
    views = AnchorSet(single.paths, single.captions, concepts=["x", "x"] + [str(i) for i in range(len(single) - 2)])
    assert bg.default_spec(views, None) == "emoji"
    sounds = AnchorSet(single.paths, single.captions, modality="audio")
    assert bg.default_spec(sounds, None) == "none"
    with pytest.raises(InputError, match="expected --background 'emoji', 'none' or an anchor table"):
        bg.default_spec(single, "no/such/bank.parquet")
    for bad in (0, -1.0, float("nan"), float("inf"), "heavy", True):
        with pytest.raises(InputError, match="background weight"):
            bg.check_weight(bad)


def test_the_default_emoji_bank_is_skipped_with_a_warning_where_it_cannot_be_had(tiny_data, monkeypatch, caplog):
    from retrieval.build import background as bg
    from retrieval.build.anchors import load_anchor_set
    from retrieval.datasets import emoji

    def no_font():
        raise InputError("no Noto Color Emoji font here")

    monkeypatch.setattr(emoji, "noto_font_path", no_font)
    single = load_anchor_set(tiny_data["anchors"])
    assert bg.resolve("emoji", single, explicit=False) is None
    assert "no background bank" in caplog.text
    with pytest.raises(InputError, match="need the Noto Color Emoji font"):
        bg.resolve("emoji", single, explicit=True)


def test_the_emoji_bank_renders_every_drawable_emoji_once(monkeypatch):
    from retrieval.build import background as bg
    from retrieval.datasets import emoji

    try:
        emoji.noto_font_path()
        emoji.emoji_concepts()
    except InputError as exc:
        pytest.skip(f"emoji data unavailable: {exc}")
    bank = bg.emoji_bank(show_progress_bar=False)
    assert len(bank) > 1000 and bank.source == "emoji"
    assert all(c.startswith("an emoji of ") for c in bank.captions)
    assert bg.emoji_bank(show_progress_bar=False).content_hash == bank.content_hash  # cached renders, same bytes


def test_a_bank_of_another_modality_or_a_sharded_build_is_refused(tiny_data, fake_encoders, tone_data, tmp_path):
    from retrieval import build_collection
    from retrieval.build.options import BuildOptions

    with pytest.raises(InputError, match="expected background anchors pairing image with text"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", background=tone_data["anchors"],
                         cache_dir=str(tmp_path / "cache"), **KW)
    assert not (tmp_path / "x").exists()
    with pytest.raises(InputError, match="--background"):
        BuildOptions(background="emoji").check_sharded()
    BuildOptions(background="none").check_sharded()
    BuildOptions().check_sharded()


def test_the_bank_block_keeps_the_k_asked_for_not_the_one_capped_at_a_few_anchors(tiny_data, fake_encoders,
                                                                                   bank_table, tmp_path):
    from retrieval import build_collection

    own, bank, x = vectors(12, 6, 8), vectors(40, 6, 9), vectors(4, 6, 10)
    p = RelativeProjector(k=5, p=2.0, background=40, background_k=30).fit(np.vstack([own, bank]))
    assert p.transform(x)[:, 12:].getnnz(1).max() > 5 and p.get_params()["background_k"] == 30
    with pytest.raises(InputError, match="background k from 1 to the bank's 40"):
        RelativeProjector(k=5, background=40, background_k=41).fit(np.vstack([own, bank]))
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir=str(tmp_path / "cache"),
              background=bank_table, self_anchors=False)
    n = len(tiny_data["colours"])
    default = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "d", **kw)
    given = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "g", k=3, **kw)
    read = lambda f: flat(json.loads((f / "manifest.json").read_text()))  # noqa: E731
    assert read(default)["k"] == n and read(default)["background_k"] == n  # min(the default 256, the bank's n)
    assert read(given)["k"] == 3 and read(given)["background_k"] == 3


def test_a_rotated_encoder_stitches_exactly_through_anchors_and_bank(tiny_data, fake_encoders, bank_table, tmp_path):
    """Stitching encodes the bank with the query's encoder too: a rotated copy of the build's encoder
    must give exactly the build's relative answers."""
    from retrieval import Collection, build_collection

    from .test_stitching import RotatedImage

    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", background=bank_table,
                           cache_dir="", **dict(KW, center=False))
    plain, col = Collection.open(out), Collection.open(out, image_encoder=RotatedImage())
    for img in tiny_data["corpus_images"]:
        want = plain.search(img, k=4, target="text", route="relative")
        got = col.search(img, k=4, target="text", route="relative")
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)


def test_a_format_5_collection_opens_without_a_bank_and_answers_as_before(tiny_data, fake_encoders, tmp_path):

    from retrieval import Collection, build_collection

    from .conftest import as_older_format

    plain = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "plain", background="none",
                             cache_dir=str(tmp_path / "cache"), **KW)
    m = json.loads((plain / "manifest.json").read_text())
    assert "background" not in flat(m) and "background" not in m["anchors"]
    old = as_older_format(plain, tmp_path / "old", 5)
    a, b = Collection.open(plain), Collection.open(old)
    assert b.manifest["format_version"] == 5 and isinstance(b.projectors["image"].to_spec(), list)  # no bank block
    for c in tiny_data["colours"]:
        assert [(h.id, h.score) for h in a.search(f"a {c} square", k=4)] == \
               [(h.id, h.score) for h in b.search(f"a {c} square", k=4)]


def test_cli_builds_with_a_bank_and_info_shows_it(tiny_data, fake_encoders, bank_table, tmp_path, capsys):
    from retrieval.cli.main import main

    out = tmp_path / "cli"
    assert main(["build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"], "--out", str(out),
                 "--image-encoder", "fake-image", "--text-encoder", "fake-text", "-k", "3",
                 "--background", bank_table, "--background-weight", "0.5", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"background   {len(tiny_data['colours'])} pairs from {bank_table}" in shown and "weight 0.5" in shown
    code = main(["build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"], "--out",
                 str(tmp_path / "bad"), "--image-encoder", "fake-image", "--text-encoder", "fake-text",
                 "--background-weight", "-1", "--no-progress"])
    assert code != 0 and "background weight" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def with_and_without(tiny_data, bank_table, tmp_path):
    """The tiny collection built with the bank and without it (opened)."""
    from retrieval import Collection, build_collection

    kw = dict(KW, cache_dir=str(tmp_path / "cache"))
    return tuple(Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / name,
                                                  background=spec, **kw))
                 for name, spec in (("with", bank_table), ("without", "none")))


def sides(col):
    """A collection's classifier sides, as Collection.classifier makes them."""
    from retrieval.api.classify import Side
    from retrieval.store import projectors as stored

    specs = stored.specs(col.manifest)
    return {("image" if m == col.modality else "text"): Side(s, *stored.parts(col.manifest, s, col.anchor_vectors[m]))
            for m, s in specs.items()}


def test_classification_keeps_the_bank_unless_asked_to_leave_it_out(tiny_data, fake_encoders, bank_table, tmp_path):
    from retrieval.api.classify import ZeroShotClassifier

    bg, none = with_and_without(tiny_data, bank_table, tmp_path)
    labels = [f"{c} thing" for c in tiny_data["colours"]]
    assert bg.classifier(labels).class_rel.shape[1] == 2 * len(tiny_data["colours"])  # the collection's bank kept
    assert none.classifier(labels).class_rel.shape[1] == len(tiny_data["colours"])
    without = ZeroShotClassifier(labels, ["a {}"], text_encoder=bg.encoder("text"), use_background=False, **sides(bg))
    alone = ZeroShotClassifier(labels, ["a {}"], text_encoder=none.encoder("text"), **sides(none))
    x = np.asarray(bg.sides["image"].abs)
    assert without.class_rel.shape[1] == len(tiny_data["colours"])
    np.testing.assert_allclose(without.scores(x), alone.scores(x), atol=1e-6)  # left out = built without


def test_explain_names_the_bank_and_counts_its_cost(tiny_data, fake_encoders, bank_table, tmp_path):
    bg, none = with_and_without(tiny_data, bank_table, tmp_path)
    text = bg.plan("text").explain()
    assert f"and background bank {bank_table} ({len(tiny_data['colours'])})" in text

    def cost(col):
        return {r.route: r.cost for r in col.plan("text").alternatives}["relative"]

    assert cost(bg) > cost(none)  # the bank's anchors are relativised against too


def test_a_views_build_runs_the_bank_through_its_style_normaliser(tiny_data, fake_encoders, bank_table, tmp_path):
    import pyarrow.parquet as pq

    from retrieval import Collection, build_collection
    from retrieval.store.arrow import sparse_from_columns

    from .test_style import _two_style_anchors

    out = build_collection(tiny_data["corpus"], _two_style_anchors(tmp_path), tmp_path / "styled", background=bank_table,
                           cache_dir=str(tmp_path / "cache"), **KW)
    m = json.loads((out / "manifest.json").read_text())
    n, n_bank = m["counts"]["anchors"], len(tiny_data["colours"])
    assert m["style"]["concepts"] == n and m["anchors"]["background"]["count"] == n_bank
    col = Collection.open(out)
    proj = col.projectors["image"]
    # anchors and bank alike start with the collection's style normaliser
    assert all(chain.steps[0].name == "style" and chain.steps[0].normaliser is col.style
               for chain in proj.blocks.values()) and col.style is not None
    table = pq.read_table(out / "items.parquet")
    stored = sparse_from_columns(table.column("rel_indices"), table.column("rel_values"), n + n_bank)
    assert abs(proj.transform(np.asarray(col.sides["image"].abs)) - stored).max() < 1e-6
    for colour in tiny_data["colours"]:
        assert col.search(f"a {colour} square", k=1)[0].path.endswith(f"{colour}.png")


def test_bank_rows_the_anchors_already_have_are_left_out(tiny_data, bank_table, tmp_path, caplog):
    from retrieval.build import background as bg
    from retrieval.build.anchors import AnchorSet, load_anchor_set

    anchors, bank = load_anchor_set(tiny_data["anchors"]), load_anchor_set(bank_table)
    assert bg.without_duplicates(anchors, anchors.paths, anchors.captions) is None  # a bank of the anchors: none
    assert bg.resolve(tiny_data["anchors"], anchors, explicit=True) is None
    assert "every pair of" in caplog.text and "already among the anchors" in caplog.text
    kept = bg.resolve(bank_table, anchors, explicit=True)
    assert kept is not None and len(kept) == len(bank)  # nothing shared: the bank as it is
    # one row shares a caption (other case and spaces), one a picture (the same bytes): both go
    mixed = AnchorSet(bank.paths[:3] + [anchors.paths[0]], ["  A RED SQUARE ", bank.captions[1], bank.captions[2],
                                                            "something else"], source="mixed")
    out = bg.without_duplicates(mixed, anchors.paths, anchors.captions)
    assert out.captions == [bank.captions[1], bank.captions[2]] and out.source == "mixed"


def test_a_views_build_takes_its_bank_k_from_the_encoders_views_defaults(tiny_data, fake_encoders, bank_table,
                                                                        tmp_path, monkeypatch):
    """An encoder whose views k validation chose differently (options.VIEWS_K_P_BY_ENCODER) gives
    its bank block that k too, not the generic DEFAULT_VIEWS_K."""
    from retrieval import build_collection
    from retrieval.build import options

    from .test_style import _two_style_anchors

    monkeypatch.setitem(options.VIEWS_K_P_BY_ENCODER, "fake-image", (2, 2.0))
    out = build_collection(tiny_data["corpus"], _two_style_anchors(tmp_path), tmp_path / "styled", background=bank_table,
                           cache_dir=str(tmp_path / "cache"), image_encoder="fake-image", text_encoder="fake-text")
    projector = flat(json.loads((out / "manifest.json").read_text()))
    assert projector["k"] == 2 and projector["background_k"] == 2
