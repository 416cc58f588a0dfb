"""One BuildOptions for the CLI, build_collection and build_sharded: the same settings mean the same
build whichever way they are given; a setting nobody knows is refused with the list; the CLI can
set every field; a library call leaves the process environment as it found it."""

import dataclasses
import os

import pytest

from retrieval import BuildOptions, Collection, build_collection, open_collection
from retrieval.api import DEFAULT_WHITEN, Searchable
from retrieval.cli.main import parser
from retrieval.errors import InputError, UnknownNameError
from tests.conftest import flat

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="")


def test_options_and_keywords_build_the_same_collection(tiny_data, fake_encoders, tmp_path):
    a = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "a", BuildOptions(k=3, p=2.0, **FAKE))
    b = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b", k=3, p=2.0, **FAKE)
    # keywords change the options given: here they override k
    c = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", BuildOptions(k=2, **FAKE), k=3,
                         p=2.0)
    ma, mb, mc = (Collection.open(x).manifest for x in (a, b, c))
    assert flat(ma) == flat(mb) == flat(mc) == {"kind": "asif", "k": 3, "p": 2.0, "center": True,
                                                                 "whiten": DEFAULT_WHITEN}
    hits = [[h.id for h in Collection.open(x).search("a red square", k=4)] for x in (a, b, c)]
    assert hits[0] == hits[1] == hits[2]


def test_an_unknown_setting_is_refused_with_the_known_ones_before_anything_is_written(tiny_data, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(UnknownNameError, match=r"unknown build option\(s\) 'kk'; known: image_encoder, .*label_weight"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], out, kk=3)
    assert not out.exists()
    with pytest.raises(InputError, match="expected BuildOptions"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], out, {"k": 3})
    assert BuildOptions().replace(k=5).k == 5 and BuildOptions().k is None  # replace copies; frozen


def test_the_cli_sets_every_build_option():
    ns = parser().parse_args(["build", "--corpus", "c", "--anchors", "a.csv", "--out", "o", "-k", "12", "-p", "3",
                              "--no-center", "--index", "inverted", "--pivot-anchors", "s.csv", "--no-progress",
                              "--label-weight", "0.3", "--image-encoder", "efficientnet-lite2", "--whiten", "0"])
    o = BuildOptions.from_namespace(ns)
    assert (o.k, o.p, o.center, o.index, o.pivots, o.show_progress_bar, o.label_weight, o.image_encoder, o.whiten) == \
        (12, 3.0, False, "inverted", ("s.csv",), False, 0.3, "efficientnet-lite2", 0.0)
    # a field added to BuildOptions without its command-line option fails here
    dests = {a.dest for a in parser()._subparsers._group_actions[0].choices["build"]._actions}
    spelled_otherwise = {"pivots": "pivot_anchors", "show_progress_bar": "progress"}
    missing = [f.name for f in dataclasses.fields(BuildOptions) if spelled_otherwise.get(f.name, f.name) not in dests]
    assert missing == []


def test_a_sharded_build_refuses_what_shards_do_not_support_before_reaching_ray(tiny_data, tmp_path):
    from retrieval.distributed import build_sharded

    for bad in ({"pivots": [tiny_data["anchors"]]}, {"dense_index": "Flat"}, {"kind": "cosine"}, {"labels": True}):
        with pytest.raises(InputError, match="expected a plain ASIF build for a sharded collection, got " + next(iter(bad))):
            build_sharded(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "big", **bad)
    assert not (tmp_path / "big").exists() and not (tmp_path / "big.partial").exists()


def test_ray_usage_stats_are_off_only_while_ray_starts(monkeypatch):
    from retrieval.api.cluster import _usage_stats_off

    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    with _usage_stats_off():
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert "RAY_USAGE_STATS_ENABLED" not in os.environ  # put back as it was
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")  # the user's own choice is kept
    with _usage_stats_off():
        assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "1"


def test_open_collection_opens_a_folder_that_keeps_the_protocol(tiny_collection):
    col = open_collection(tiny_collection)
    assert isinstance(col, Collection) and isinstance(col, Searchable)
    assert [h.id for h in col.search("a red square", k=3)] == [h.id for h in Collection.open(tiny_collection).search(
        "a red square", k=3)]


def test_the_recipe_settles_every_default_once(tiny_data, fake_encoders, tmp_path):
    """Build, reanchor, reencode and the distributed build take their settings from one function:
    the defaults for images with one picture per caption, for views, for sounds; what was given
    wins; a setting that cannot work is refused before anything is encoded."""
    from retrieval.build.anchors import AnchorSet
    from retrieval.build.options import DEFAULT_IMAGE_P, DEFAULT_K, DEFAULT_P, DEFAULT_VIEWS_K, DEFAULT_VIEWS_P
    from retrieval.build.recipe import recipe
    from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT, DEFAULT_WEIGHT

    paths = [str(tmp_path / f"{i}.png") for i in range(300)]
    for f in paths + [str(tmp_path / f"{i}.wav") for i in range(300)]:
        open(f, "wb").close()  # an anchor set wants its files to exist; the recipe never reads them
    single = AnchorSet(paths, [f"thing {i}" for i in range(300)], modality="image")
    views = AnchorSet(paths, [f"thing {i // 3}" for i in range(300)], modality="image",
                      concepts=[str(i // 3) for i in range(300)])
    sounds = AnchorSet([str(tmp_path / f"{i}.wav") for i in range(300)], [f"sound {i}" for i in range(300)], modality="audio")
    r = recipe(single, "fake-image", BuildOptions())
    assert (r.k, r.p, r.whiten, r.label_weight, r.pivot_k, r.pivot_p) == (
        DEFAULT_K, DEFAULT_IMAGE_P, DEFAULT_WHITEN, DEFAULT_WEIGHT, DEFAULT_K, DEFAULT_P)
    r = recipe(views, "fake-image", BuildOptions())
    assert (r.k, r.p, r.whiten, r.label_weight) == (DEFAULT_VIEWS_K, DEFAULT_VIEWS_P, 0.0, DEFAULT_VIEWS_WEIGHT)
    assert recipe(sounds, "fake-audio", BuildOptions()).p == DEFAULT_P
    r = recipe(single, "fake-image", BuildOptions(k=16, p=3.0, whiten=0, label_weight=0.2))
    assert (r.k, r.p, r.whiten, r.label_weight, r.pivot_k, r.pivot_p) == (16, 3.0, 0.0, 0.2, 16, 3.0)
    names = lambda spec: [s["step"] for s in spec]  # noqa: E731
    assert names(r.spec()) == ["unit", "centre", "unit", "asif"]
    assert names(recipe(single, None, BuildOptions()).spec()) == ["unit", "centre", "whiten", "unit", "asif"]
    assert recipe(single, None, BuildOptions()).spec()[2] == {"step": "whiten", "lam": DEFAULT_WHITEN}
    assert names(recipe(views, None, BuildOptions()).specs("image", style=True)["image"])[0] == "style"
    # the bank block: the k asked for (or the default) capped at the bank, not at the user's anchors
    banked = recipe(single, None, BuildOptions(k=16)).spec(n_bank=10)
    assert banked["blocks"]["bank"][-1] == {"step": "asif", "k": 10, "p": DEFAULT_IMAGE_P}
    assert recipe(single, None, BuildOptions(n_anchors=40)).k == 40  # k at most the anchors kept
    for bad, match in ((dict(label_weight=-1.0), "label weight"), (dict(background_weight=0.0), "background weight"),
                       (dict(k=301), "k <= number of anchors")):
        with pytest.raises(InputError, match=match):
            recipe(single, None, BuildOptions(**bad))
    with pytest.raises(InputError, match="label weight"):  # in a build, before any encoder loads
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", label_weight=-1.0, **FAKE)
    assert not fake_encoders and not (tmp_path / "x").exists()
