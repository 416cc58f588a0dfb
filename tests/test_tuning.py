"""build --tune (retrieval/build/tuning.py): the folds score a setting exactly as a build with it
scores, a clearly better setting is found, a small validation edge keeps the defaults, and a tuned
build equals a build given the chosen settings."""

import dataclasses

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.build import tuning
from retrieval.build.options import BuildOptions
from retrieval.build.recipe import AnchorShape, recipe
from retrieval.core.folds import validation_folds
from retrieval.core.metrics import lexicographic, query_recall
from retrieval.core.projector import fit_projector
from retrieval.errors import InputError


def pairs(n=120, seed=0):
    """Media and text vectors of n concepts sharing a latent cause, each with its own noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 16))
    media = z @ rng.normal(size=(16, 40)) + 3.0 * rng.normal(size=(n, 40))
    text = z @ rng.normal(size=(16, 24)) + 3.0 * rng.normal(size=(n, 24))
    return media.astype(np.float32), text.astype(np.float32), [f"concept {i}" for i in range(n)]


@pytest.mark.parametrize("k, p, center, whiten", [(256, 2.0, True, 9.0), (16, 8.0, False, 0.0), (32, 1.0, True, 0.0)])
def test_a_fold_is_scored_as_a_build_with_that_setting_scores(k, p, center, whiten):
    media, text, concepts = pairs()
    rec = dataclasses.replace(recipe(AnchorShape(len(concepts)), None, BuildOptions()), k=k, p=p, center=center,
                              whiten=whiten)
    folds = validation_folds(concepts, np.arange(len(concepts)), tuning.FOLDS)
    prepared = tuning.Prepared(media, text, folds)
    for f, (fit, held) in enumerate(folds):
        spec = dataclasses.replace(rec, k=min(k, len(fit))).spec()
        pt, pm = fit_projector(spec, text[fit]), fit_projector(spec, media[fit])
        s = lexicographic((pt.transform(text[held]) @ pm.transform(media[held]).T).toarray(),
                          pt.dense(text[held]) @ pm.dense(media[held]).T)
        at, truth = tuning.depth(len(held), len(held) + len(fit)), np.arange(len(held))
        want = np.concatenate([query_recall(s, truth, at), query_recall(s.T, truth, at)])
        np.testing.assert_allclose(tuning.fold_hits(rec, prepared, f), want, atol=1e-6)


def test_a_clearly_better_setting_is_chosen_and_recorded():
    media, text, concepts = pairs(n=200, seed=1)
    # whitening at a tiny shrinkage on 150 noisy anchors fits their noise: a default far from the best
    bad = dataclasses.replace(recipe(AnchorShape(len(concepts)), None, BuildOptions()), whiten=0.01)
    got = tuning.tune(media, text, concepts, bad)
    r = got.record
    assert got.recipe != bad and got.recipe.whiten != 0.01
    assert r["chosen"]["score"] > r["default"]["score"] + r["standard_error"]
    assert r["tried"] == r["candidates"] == len(got.table) and r["default"]["whiten"] == 0.01


def test_a_small_edge_keeps_the_defaults():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(float)
    nudged = base.copy()
    nudged[np.flatnonzero(base == 0)[:3]] = 1.0  # 3 of 400 queries better, 2 worse: inside the noise
    nudged[np.flatnonzero(base == 1)[:2]] = 0.0
    rec = recipe(AnchorShape(500), None, BuildOptions())
    other = dataclasses.replace(rec, k=16)
    assert tuning.choose([rec, other], [base, nudged], 2, 1.0, 100).recipe == rec
    better = np.where(rng.random(400) < 0.4, 1.0, base)
    assert tuning.choose([rec, other], [base, better], 2, 1.0, 100).recipe == other


def test_the_budget_stops_after_the_default():
    media, text, concepts = pairs()
    got = tuning.tune(media, text, concepts, recipe(AnchorShape(len(concepts)), None, BuildOptions()), budget_s=0.0)
    assert got.record["tried"] == 1 and got.record["chosen"] == got.record["default"]


def colour_anchors(tmp_path, n):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "sq").mkdir()
    names = ["red", "green", "blue", "yellow", "purple", "orange", "black", "grey"]
    rows = []
    for i in range(n):
        rgb = tuple(int(v) for v in rng.integers(0, 230, 3))
        Image.new("RGB", (12, 12), rgb).save(tmp_path / "sq" / f"{i}.png")
        rows.append((f"sq/{i}.png", f"a {names[i % 8]} square of shade {i}"))
    pq.write_table(pa.table({"image": [r[0] for r in rows], "caption": [r[1] for r in rows]}), tmp_path / "many.parquet")
    return str(tmp_path / "many.parquet")


def test_a_tuned_build_equals_a_build_given_the_chosen_settings(tiny_data, fake_encoders, tmp_path, capsys):
    from retrieval.cli.main import main

    anchors = colour_anchors(tmp_path, tuning.needed_concepts() + 8)
    # without self-anchoring: tuned on the given and the corpus's pairs, k may exceed what the given alone allow
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background="none", labels=False,
              self_anchors=False)
    tuned = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "tuned", tune=True, **kw))
    c = tuned.manifest["tuning"]["chosen"]
    given = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "given", k=c["k"], p=c["p"],
                                             center=c["center"], whiten=c["whiten"], **kw))
    queries = [f"a {x} thing" for x in tiny_data["colours"]]
    assert ([[(h.path, round(h.score, 6)) for h in hs] for hs in tuned.search_many(queries, k=4)]
            == [[(h.path, round(h.score, 6)) for h in hs] for hs in given.search_many(queries, k=4)])
    assert main(["info", str(tmp_path / "tuned")]) == 0
    assert "tuning       " in capsys.readouterr().out
    assert main(["explain", str(tmp_path / "tuned"), "a red thing"]) == 0
    assert "anchor concepts: validation" in capsys.readouterr().out


def test_tune_refuses_what_it_cannot_choose_around(tiny_data, fake_encoders, tmp_path):
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background="none", labels=False)
    with pytest.raises(InputError, match=r"at least 64 distinct anchor concepts .* got 8"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "o1", tune=True, **kw)
    anchors = colour_anchors(tmp_path, tuning.needed_concepts() + 8)
    with pytest.raises(InputError, match="got k given as well"):
        build_collection(tiny_data["corpus"], anchors, tmp_path / "o2", tune=True, k=8, **kw)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_reanchor_tunes_to_the_new_anchors_as_a_build_does(tiny_data, fake_encoders, tmp_path):
    from retrieval.cli.main import main

    anchors = colour_anchors(tmp_path, tuning.needed_concepts() + 8)
    kw = ["--image-encoder", "fake-image", "--text-encoder", "fake-text", "--background", "none", "--no-labels",
          "--no-progress"]
    assert main(["build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"], "--out",
                 str(tmp_path / "col"), *kw]) == 0
    assert main(["build", "--corpus", tiny_data["corpus"], "--anchors", anchors, "--out", str(tmp_path / "fresh"),
                 "--tune", *kw]) == 0
    assert main(["reanchor", str(tmp_path / "col"), "--anchors", anchors, "--tune", "--no-progress"]) == 0
    moved, fresh = Collection.open(tmp_path / "col"), Collection.open(tmp_path / "fresh")
    assert moved.manifest["tuning"]["chosen"] == fresh.manifest["tuning"]["chosen"]
    assert moved.manifest["projectors"] == fresh.manifest["projectors"]
