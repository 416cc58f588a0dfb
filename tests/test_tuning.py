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
from retrieval.build.tune_routes import choose_route
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


def shared_pairs(n, seed, noise=3.0):
    """Like :func:`pairs`, but every call draws from the same two maps: a second set is a bank for the first."""
    rng, maps = np.random.default_rng(seed), np.random.default_rng(99)
    z = rng.normal(size=(n, 16))
    media = z @ maps.normal(size=(16, 40)) + noise * rng.normal(size=(n, 40))
    text = z @ maps.normal(size=(16, 24)) + noise * rng.normal(size=(n, 24))
    return media.astype(np.float32), text.astype(np.float32), [f"concept {i}" for i in range(n)]


@pytest.mark.parametrize("k, p, center, whiten", [(256, 2.0, True, 9.0), (16, 8.0, False, 0.0), (32, 1.0, True, 0.0)])
def test_the_bank_block_is_scored_as_a_build_scores_it(k, p, center, whiten):
    media, text, concepts = shared_pairs(120, 0)
    bank_media, bank_text, _ = shared_pairs(90, 5, noise=1.0)
    rec = dataclasses.replace(recipe(AnchorShape(len(concepts)), None, BuildOptions()), background_weight=3.0, k=k,
                              p=p, center=center, whiten=whiten, bank_k=64)  # the bank's k below its 90 rows
    folds = validation_folds(concepts, np.arange(len(concepts)), tuning.FOLDS)
    prepared = tuning.Prepared(media, text, folds, (bank_media, bank_text))
    for f, (fit, held) in enumerate(folds):
        spec = dataclasses.replace(rec, k=min(rec.k, len(fit))).spec(n_bank=len(bank_media))
        pt = fit_projector(spec, text[fit], bank=bank_text)
        pm = fit_projector(spec, media[fit], bank=bank_media)
        s = lexicographic((pt.transform(text[held]) @ pm.transform(media[held]).T).toarray(),
                          pt.dense(text[held]) @ pm.dense(media[held]).T)
        at, truth = tuning.depth(len(held), len(held) + len(fit)), np.arange(len(held))
        want = np.concatenate([query_recall(s, truth, at), query_recall(s.T, truth, at)])
        np.testing.assert_allclose(tuning.fold_hits(rec, prepared, f, 3.0), want, atol=1e-6)


@pytest.mark.parametrize("n, noise, bank_noise, heavier", [(100, 5.0, 1.0, True), (200, 5.0, 30.0, False)])
def test_the_bank_weight_follows_what_the_bank_is_worth_on_the_folds(n, noise, bank_noise, heavier):
    media, text, concepts = shared_pairs(n, 0, noise=noise)
    bank = shared_pairs(400, 5, noise=bank_noise)[:2]  # the same two spaces: clean pairs help, noise hurts
    rec = recipe(AnchorShape(len(concepts)), None, BuildOptions())
    prepared = tuning.Prepared(media, text, validation_folds(concepts, np.arange(len(concepts)), tuning.FOLDS), bank)
    chosen, b = tuning.weigh(rec, prepared, "background_weight", tuning.BANK_WEIGHTS,
                             lambda r, f: tuning.fold_hits(r, prepared, f, r.background_weight))
    assert b["default"] == rec.background_weight and chosen.background_weight == b["chosen"]
    assert tuning.tune(media, text, concepts, rec, bank=bank).record["bank"]["default"] == rec.background_weight
    assert (b["chosen"] > b["default"]) if heavier else (b["chosen"] < b["default"])
    scores = {w["weight"]: w["score"] for w in b["weights"]}
    assert scores[b["chosen"]] - scores[b["default"]] > b["margin"] * b["standard_error"] - 1e-4  # rounded to 4 places


@pytest.mark.parametrize("label_noise, useful", [(0.5, True), (None, False)])
def test_the_label_weight_follows_what_the_bridge_is_worth_on_the_folds(label_noise, useful):
    media, text, concepts = pairs()
    rng = np.random.default_rng(7)
    # the media's label vectors: near their own caption's text vector, or unrelated points of text space
    labels = text + label_noise * rng.normal(size=text.shape) if label_noise else rng.normal(size=text.shape)
    labels = (labels / np.linalg.norm(labels, axis=1, keepdims=True)).astype(np.float32)
    rec = recipe(AnchorShape(len(concepts)), None, BuildOptions())
    got = tuning.tune(media, text, concepts, rec, labels=labels)
    lab, routes = got.record["labels"], got.record["routes"]
    assert lab["default"] == rec.label_weight and got.recipe.label_weight == lab["chosen"]
    scores = routes["text->image"]["scores"]
    if useful:  # the bridge at its default weight already finds every caption's picture: kept
        assert lab["chosen"] >= lab["default"] and scores["relative+labels"] > scores["relative"] + 0.1
        assert routes["text->image"]["route"] == "relative+labels"
    else:  # unrelated label points only add noise: lighter, and another route
        assert lab["chosen"] < lab["default"] and routes["text->image"]["route"] != "relative+labels"
    assert "relative+labels" not in routes["image->text"]["scores"]
    assert routes["text->image"]["default"] == "relative+labels"  # the priors' choice where the bridge exists


def test_a_route_that_wins_on_the_folds_is_taken_by_the_planner():
    from retrieval.planning.planner import Bridge, plan

    media, text, concepts = pairs()  # linear maps of a shared cause: the orthogonal translator does well
    got = tuning.tune(media, text, concepts, recipe(AnchorShape(len(concepts)), None, BuildOptions()))
    routes = got.record["routes"]
    assert set(routes) == {"text->image", "image->text"}
    for r in routes.values():
        assert r["default"] == "relative" and r["route"] == "translation" and r["queries"] == len(concepts)
        assert r["scores"]["translation"] > r["scores"]["relative"] + r["standard_error"]
    spaces = {"image": "img", "text": "txt"}
    bridges = [Bridge("anchors", ("image", "text")), Bridge("translator", ("text", "image")),
               Bridge("translator", ("image", "text")), Bridge("labels", ("text", "image"))]
    assert plan("text", "image", spaces, bridges).route == "relative+labels"  # the priors
    p = plan("text", "image", spaces, bridges, measured=routes)
    assert p.route == "translation" and "validation folds" in p.explain() and p.to_dict()["measured"] == routes["text->image"]
    assert plan("image", "text", spaces, bridges, measured=routes).route == "translation"
    assert plan("text", "image", spaces, bridges, measured=routes, route="relative").route == "relative"
    # a stitched query (another encoder) is not what the folds measured: the priors decide
    assert plan("text", "image", spaces, bridges, measured=routes, query_encoder="other").route != "translation"
    kept = {"text->image": dict(routes["text->image"], route="relative+labels")}
    assert plan("text", "image", spaces, bridges, measured=kept).route == "relative+labels"
    gone = {"text->image": dict(routes["text->image"], route="fusion")}  # not possible here: the priors decide
    assert plan("text", "image", spaces, bridges[:1], measured=gone).route == "relative"


def test_another_route_must_win_by_a_standard_error():
    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(float)
    close = base.copy()
    close[np.flatnonzero(base == 0)[:3]] = 1.0  # 3 of 400 better, 2 worse: inside the noise
    close[np.flatnonzero(base == 1)[:2]] = 0.0
    far = np.where(rng.random(400) < 0.3, 1.0, base)  # ~15 % better
    assert choose_route({"relative": base, "translation": close, "fusion": base}, "relative")["route"] == "relative"
    assert choose_route({"relative": base, "translation": far, "fusion": base}, "relative")["route"] == "translation"
    assert choose_route({"relative": far, "translation": base, "fusion": base}, "fusion")["route"] == "relative"


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
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background=tiny_data["anchors"],
              labels=False, self_anchors=False)
    tuned = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "tuned", tune=True, **kw))
    c, bank = tuned.manifest["tuning"]["chosen"], tuned.manifest["tuning"]["bank"]
    given = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "given", k=c["k"], p=c["p"],
                                             center=c["center"], whiten=c["whiten"], background_weight=bank["chosen"],
                                             **kw))
    assert tuned.manifest["projectors"] == given.manifest["projectors"]
    queries = [f"a {x} thing" for x in tiny_data["colours"]]
    route = tuned.plan("text").route  # the tuned collection's own route (the given one takes the priors')
    assert route == tuned.manifest["tuning"]["routes"]["text->image"]["route"]
    assert ([[(h.path, round(h.score, 6)) for h in hs] for hs in tuned.search_many(queries, k=4)]
            == [[(h.path, round(h.score, 6)) for h in hs] for hs in given.search_many(queries, k=4, route=route)])
    assert main(["info", str(tmp_path / "tuned")]) == 0
    out = capsys.readouterr().out
    assert "tuning       " in out and f"text->image route {route}" in out and "bank weight" in out
    assert main(["explain", str(tmp_path / "tuned"), "a red thing"]) == 0
    out = capsys.readouterr().out
    assert "anchor concepts: validation" in out and f"taken: {route}" in out


def test_a_tuned_build_weighs_the_label_bridge_with_the_anchors_own_label_vectors(tiny_data, fake_encoders, tmp_path):
    from retrieval.build.reanchor import reanchor

    anchors = colour_anchors(tmp_path, tuning.needed_concepts() + 8)
    kw = dict(image_encoder="fake-labelled-image", text_encoder="fake-text", cache_dir=str(tmp_path / "cache"),
              background="none", labels=True, self_anchors=False)
    tuned = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "tuned", tune=True, **kw))
    t = tuned.manifest["tuning"]
    assert tuned.manifest["labels"]["weight"] == t["labels"]["chosen"]
    assert "relative+labels" in t["routes"]["text->image"]["scores"]
    c = t["chosen"]
    given = Collection.open(build_collection(tiny_data["corpus"], anchors, tmp_path / "given", k=c["k"], p=c["p"],
                                             center=c["center"], whiten=c["whiten"],
                                             label_weight=t["labels"]["chosen"], **kw))
    route = tuned.plan("text").route
    assert route == t["routes"]["text->image"]["route"]
    queries = [f"a {x} thing" for x in tiny_data["colours"]]
    assert ([[(h.path, round(h.score, 6)) for h in hs] for hs in tuned.search_many(queries, k=4)]
            == [[(h.path, round(h.score, 6)) for h in hs] for hs in given.search_many(queries, k=4, route=route)])
    # reanchor --tune makes the anchors' label vectors with the network the collection was built with
    moved = Collection.open(reanchor(tmp_path / "given", anchors, tmp_path / "moved", tune=True))
    assert moved.manifest["tuning"]["labels"] == t["labels"] and moved.manifest["tuning"]["routes"] == t["routes"]


def test_tune_refuses_what_it_cannot_choose_around(tiny_data, fake_encoders, tmp_path):
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background="none", labels=False)
    with pytest.raises(InputError, match=r"at least 64 distinct anchor concepts .* got 8"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "o1", tune=True, **kw)
    anchors = colour_anchors(tmp_path, tuning.needed_concepts() + 8)
    with pytest.raises(InputError, match="got k given as well"):
        build_collection(tiny_data["corpus"], anchors, tmp_path / "o2", tune=True, k=8, **kw)
    with pytest.raises(InputError, match="got background_weight given as well"):
        build_collection(tiny_data["corpus"], anchors, tmp_path / "o3", tune=True, background_weight=2.0, **kw)
    assert not any((tmp_path / o).exists() for o in ("o1", "o2", "o3"))


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
    assert moved.manifest["tuning"]["routes"] == fresh.manifest["tuning"]["routes"]
    assert moved.manifest["projectors"] == fresh.manifest["projectors"]
