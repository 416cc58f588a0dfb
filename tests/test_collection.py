"""Build, open, search and classify a small collection with the fake encoders; bad input and atomicity."""

import json
import os

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.api import DEFAULT_WHITEN, collection
from retrieval.errors import CollectionFormatError, InputError
from tests.conftest import flat

from .conftest import FakeTextEncoder, solid

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text")


def test_manifest_records_what_built_it(tiny_collection, tiny_data):
    m = json.loads((tiny_collection / "manifest.json").read_text())
    assert m["format"] == "retrieval-collection" and m["format_version"] == 7
    assert m["encoders"] == {"image": {"spec": "fake-image", "dim": 24}, "text": {"spec": "fake-text", "dim": 32}}
    assert flat(m) == {"kind": "asif", "k": 3, "p": 2.0, "center": True, "whiten": DEFAULT_WHITEN}
    assert m["counts"]["items"] == 8 and m["counts"]["corpus_captions"] == 8
    assert m["counts"]["anchors"] == 16 and m["anchors"]["self"]["count"] == 8  # 8 given + the captioned items
    assert set(m["files"]) == {"items.parquet", "texts.parquet", "anchors.parquet",
                               "translator-text-image.parquet", "translator-image-text.parquet",
                               "image_vectors.npy", "text_vectors.npy"}
    assert [(b["kind"], b["modalities"]) for b in m["bridges"]] == [
        ("anchors", ["image", "text"]), ("translator", ["text", "image"]), ("translator", ["image", "text"])]
    assert len(m["anchors"]["content_hash"]) == 64


def test_text_to_image_finds_the_matching_colour(tiny_collection, tiny_data):
    col = Collection.open(tiny_collection)
    for colour in tiny_data["colours"]:
        hits = col.search(f"a {colour} square", k=3)
        assert os.path.basename(hits[0].path) == f"{colour}.png"
        assert [h.rank for h in hits] == [1, 2, 3]
        assert hits[0].score >= hits[1].score
    # a hit as JSON: every field, in order, plain Python numbers (NaN secondary as None)
    for hit in hits + col.search("a red square", k=2, target="text"):
        d = hit.to_dict()
        assert tuple(d) == collection.HIT_FIELDS and type(d["score"]) is float
        assert d["secondary"] is None or type(d["secondary"]) is float


def test_image_queries_use_the_absolute_route_for_images_and_relative_for_texts(tiny_collection, tiny_data):
    col = Collection.open(tiny_collection)
    query = tiny_data["anchor_images"][0]  # a red square of another size
    assert col.plan("image", "image").route == "absolute"
    assert col.plan("image", "text").route == "relative"
    assert os.path.basename(col.search(query, k=1)[0].path) == "red.png"
    texts = col.search(query, k=16, target="text")
    assert {h.source for h in texts} == {"corpus", "anchor"}
    assert "red" in texts[0].caption
    corpus_hit = next(h for h in texts if h.source == "corpus")
    assert corpus_hit.item_id is not None and corpus_hit.path.endswith(".png")


def test_search_many_equals_single_searches(tiny_collection):
    col = Collection.open(tiny_collection)
    qs = ["a red square", "a blue square", "green"]
    many = col.search_many(qs, k=4)
    for q, hits in zip(qs, many):
        assert [h.id for h in hits] == [h.id for h in col.search(q, k=4)]


@pytest.mark.parametrize("index,file", [("faiss", "image_relative.faiss"),
                                        ("inverted:float32", "image_relative.ids.npy"),
                                        ("inverted", "image_relative.weights.npy")])
def test_every_backend_gives_the_same_answers(tiny_data, fake_encoders, tmp_path, index, file):
    a = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "a", k=3, p=2.0,
                                         cache_dir="", **FAKE))
    b = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b", k=3, p=2.0,
                                         cache_dir="", index=index, **FAKE))
    assert file in b.manifest["files"]
    for q in ["a red square", "a purple square", "orange box"]:
        assert [h.id for h in a.search(q, k=5)] == [h.id for h in b.search(q, k=5)]
    for img in tiny_data["anchor_images"][:3]:
        assert [h.id for h in a.search(img, k=5, target="text")] == [h.id for h in b.search(img, k=5, target="text")]


def test_zero_shot_classification(tiny_collection, tiny_data):
    col = Collection.open(tiny_collection)
    preds = col.classify(tiny_data["anchor_images"], tiny_data["colours"], templates=["a {} square"], k=2)
    assert [p.labels[0] for p in preds] == tiny_data["colours"]
    own = col.classify(None, tiny_data["colours"], templates=["a {} square"], k=1)
    assert len(own) == 8
    # the items' sample is taken once per opened collection; 8 items are too few to centre on
    assert col.corpus_sample() is col.corpus_sample() and col.corpus_sample().count == 8
    assert col.classifier(tiny_data["colours"]).centred_on == "anchors"
    # a repeated request's classifier is kept; the oldest goes past KEPT_CLASSIFIERS
    first = col.classifier(tiny_data["colours"], ["a {} square"])
    assert col.classifier(tiny_data["colours"], ["a {} square"]) is first
    for i in range(collection.KEPT_CLASSIFIERS):
        col.classifier(tiny_data["colours"], [f"a {{}} square {i}"])
    assert col.classifier(tiny_data["colours"], ["a {} square"]) is not first
    with pytest.raises(InputError, match="distinct labels"):
        col.classify(None, ["red", "red"])
    with pytest.raises(InputError, match="exactly one {}"):
        col.classify(None, ["red", "blue"], templates=["no placeholder"])
    with pytest.raises(InputError, match=r"at least two labels to choose between, got \['red'\]"):
        col.classify(None, ["red"])
    # the tiny encoders have no classifier head: ASIF alone, and probabilities that sum to at most 1
    assert preds.signals == ["asif"] and "signals: asif" in preds.about()
    assert all(0 < sum(p.probabilities) <= 1 + 1e-9 and p.probabilities == sorted(p.probabilities, reverse=True)
               for p in preds)
    sure = col.classify(tiny_data["anchor_images"], tiny_data["colours"], templates=["a {} square"], k=2, abstain=1.0)
    assert all(p.abstained and p.label is None for p in sure)  # no probability reaches 1 with 8 labels


def test_corrupt_images_are_skipped_counted_and_named(tiny_data, fake_encoders, tmp_path):
    (tmp_path / "corpus2").mkdir()
    solid(tmp_path / "corpus2" / "ok.png", "red")
    (tmp_path / "corpus2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    good = tmp_path / "corpus2" / "trunc.jpg"
    solid(good, "blue", size=64)
    good.write_bytes(good.read_bytes()[:100])
    out = build_collection(tmp_path / "corpus2", tiny_data["anchors"], tmp_path / "c2", k=3, cache_dir="", **FAKE)
    info = Collection.open(out).info()
    assert info["counts"]["items"] == 1 and info["counts"]["skipped"] == 2
    assert {os.path.basename(s["path"]) for s in info["skipped"]} == {"broken.png", "trunc.jpg"}
    assert all("expected a readable image" in s["reason"] for s in info["skipped"])


@pytest.mark.parametrize("bad,match", [
    (dict(corpus="missing-folder"), "does not exist"),
    (dict(k=50), r"k <= number of anchors \(8\), got k=50"),
    (dict(index="annoy"), "expected an index spec"),
    (dict(image_encoder="minilm"), "encodes text, not image"),
    (dict(image_encoder="nope"), "unknown encoder 'nope'"),
])
def test_bad_build_input_writes_nothing(bad, match, tiny_data, fake_encoders, tmp_path):
    kwargs = dict(corpus=tiny_data["corpus"], anchors=tiny_data["anchors"], out=tmp_path / "out", k=3, cache_dir="",
                  **FAKE)
    kwargs.update(bad)
    with pytest.raises(Exception, match=match):
        build_collection(**kwargs)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_failed_rebuild_never_damages_the_existing_collection(tiny_collection, tiny_data, fake_encoders, monkeypatch):
    before = {p.name: p.read_bytes() for p in tiny_collection.iterdir()}
    with pytest.raises(InputError, match="exists"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tiny_collection, k=3, **FAKE)

    import retrieval.build.writer as build_mod

    def boom(*a, **kw):
        raise RuntimeError("disk full while writing")

    monkeypatch.setattr(build_mod, "dense_column", boom)  # fails inside the temporary folder
    with pytest.raises(RuntimeError, match="disk full"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tiny_collection, k=3, overwrite=True, cache_dir="",
                         **FAKE)
    assert {p.name: p.read_bytes() for p in tiny_collection.iterdir()} == before
    assert [p.name for p in tiny_collection.parent.iterdir() if p.name.startswith(".col.")] == []


def test_overwrite_replaces_atomically(tiny_collection, tiny_data, fake_encoders):
    build_collection(tiny_data["corpus"], tiny_data["anchors"], tiny_collection, k=2, overwrite=True, cache_dir="",
                     **FAKE)
    assert flat(Collection.open(tiny_collection).manifest)["k"] == 2
    assert [p.name for p in tiny_collection.parent.iterdir() if p.name.startswith(".col.")] == []


def _edit_manifest(folder, **changes):
    """Change a manifest as an older version of this project wrote it: those had no checksum of
    their own (format 4 added it; a hand edit of a format 4 manifest is refused)."""
    m = json.loads((folder / "manifest.json").read_text())
    m.update(changes)
    m.pop("manifest_sha256", None)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_foreign_newer_and_damaged_collections_are_refused(tiny_collection, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Collection.open(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    with pytest.raises(CollectionFormatError, match="no manifest.json"):
        Collection.open(tmp_path / "other")
    (tmp_path / "other" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(CollectionFormatError, match="written by something else"):
        Collection.open(tmp_path / "other")
    (tmp_path / "other" / "manifest.json").write_text("not json")
    with pytest.raises(CollectionFormatError, match="expected JSON"):
        Collection.open(tmp_path / "other")

    _edit_manifest(tiny_collection, format_version=99)
    with pytest.raises(CollectionFormatError, match="expected format_version 1..7 .* got 99"):
        Collection.open(tiny_collection)
    _edit_manifest(tiny_collection, format_version=1)
    items = tiny_collection / "items.parquet"
    data = bytearray(items.read_bytes())
    data[len(data) // 2] ^= 0xFF
    items.write_bytes(bytes(data))
    with pytest.raises(CollectionFormatError, match="checksum of 'items.parquet'"):
        Collection.open(tiny_collection)


def test_query_encoder_must_match_the_manifest(tiny_collection):
    # another encoder is stitched through the anchors (tests/test_stitching.py); the same one must give
    # the vectors it gave at build time
    assert "text" in Collection.open(tiny_collection, text_encoder=FakeTextEncoder(name="other-text")).stitched

    class Wider(FakeTextEncoder):
        dim = 48

    with pytest.raises(InputError, match="dimension 32, got text encoder 'fake-text' of dimension 48"):
        Collection.open(tiny_collection, text_encoder=Wider())
    col = Collection.open(tiny_collection, text_encoder=FakeTextEncoder())
    assert col.search("a red square", k=1)[0].path.endswith("red.png")
    with pytest.raises(InputError, match="k >= 1"):
        col.search("a red square", k=0)
    with pytest.raises(InputError, match="pass modality='text'"):
        col.search("missing.png")
    assert col.search("missing.png", modality="text", k=1)  # the string, searched as text
    with pytest.raises(InputError, match="route 'absolute' is impossible"):
        col.search("a red square", route="absolute")


def test_cosine_kind_builds_and_searches(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "cos", kind="cosine", cache_dir="",
                           **FAKE)
    col = Collection.open(out)
    assert flat(col.manifest)["kind"] == "cosine"
    assert col.search("a green square", k=1)[0].path.endswith("green.png")
    assert np.isfinite(col.search("a green square", k=1)[0].score)


def test_default_k_is_capped_by_the_anchor_count_but_explicit_k_is_not(tiny_data, fake_encoders, tmp_path):
    from retrieval.build.options import DEFAULT_K

    assert DEFAULT_K > 8
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "d", cache_dir="", self_anchors=False,
                           **FAKE)  # the given anchors alone: the corpus's own pairs would join them
    assert flat(Collection.open(out).manifest)["k"] == 8  # the tiny set has 8 anchors
    with pytest.raises(InputError, match="got k=9"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "e", k=9, cache_dir="", **FAKE)


@pytest.mark.parametrize("route", ["relative", "translation", "fusion"])
def test_every_cross_modal_route_runs_and_ranks_sensibly(tiny_collection, route):
    col = Collection.open(tiny_collection)
    assert col.plan("text", "image", route=route).route == route
    hits = col.search("a red square", k=8, route=route)
    assert len(hits) == 8 and len({h.id for h in hits}) == 8
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    texts = col.search(str(next(tiny_collection.parent.glob("anchors/*.png"))), k=3, target="text", route=route)
    assert len(texts) == 3


def test_explain_lists_alternatives_and_marks_the_choice(tiny_collection):
    col = Collection.open(tiny_collection)
    text = col.plan("text", "image").explain()
    assert "route relative" in text and "<- chosen" in text
    for r in ("relative", "translation", "fusion"):
        assert r in text


def test_collection_without_translators_still_opens(tiny_collection):
    """A collection written before translators existed: only the anchor bridge, no translation route."""
    m = json.loads((tiny_collection / "manifest.json").read_text())
    for b in m.pop("bridges"):
        if "file" in b:
            (tiny_collection / b["file"]).unlink()
            m["files"].pop(b["file"])
    m["format_version"] = 2
    m.pop("manifest_sha256")  # written before manifests checksummed themselves
    (tiny_collection / "manifest.json").write_text(json.dumps(m))
    col = Collection.open(tiny_collection)
    assert col.search("a red square", k=1)[0].path.endswith("red.png")
    with pytest.raises(InputError, match="route 'translation' is impossible"):
        col.search("a red square", route="translation")


@pytest.mark.parametrize("dense, rerank", [("Flat", None), ("HNSW32", None), ("auto", None), ("PQ4x2", 8)])
def test_dense_routes_through_a_built_faiss_index(tiny_data, fake_encoders, tmp_path, dense, rerank):
    exact = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "e", k=3, p=2.0,
                                             cache_dir="", **FAKE))
    built = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "d", k=3, p=2.0,
                                             cache_dir="", dense_index=dense, max_memory="1G" if dense == "auto" else None,
                                             dense_rerank=rerank, **FAKE))
    spec = built.manifest["dense_indexes"]["image_absolute"]
    assert spec.get("rerank") == rerank  # a compressed index re-scores its candidates from image_vectors.npy
    assert spec["backend"] == "faiss" and "image_absolute.faiss" in built.manifest["files"]
    assert "image_translated.faiss" in built.manifest["files"]
    if dense == "auto":  # 8 vectors fit any budget: the exact structure is chosen
        assert spec["factory"] == "Flat" and spec["estimate"]["max_memory"] == "1G"
    for img in tiny_data["anchor_images"][:4]:  # image -> image (absolute route)
        assert [h.id for h in exact.search(img, k=3)] == [h.id for h in built.search(img, k=3)]
    for q in ["a red square", "a blue square"]:
        assert ([h.id for h in exact.search(q, k=3, route="translation")]
                == [h.id for h in built.search(q, k=3, route="translation")])
    # updates rebuild the dense indexes too
    grown = built.add(tiny_data["anchors"])
    assert grown.manifest["dense_indexes"]["image_absolute"]["factory"] == spec["factory"]
    assert len(grown.sides["image"].abs_index()) == 16


def test_dense_budgets_that_nothing_fits_fail_before_encoding(tiny_data, fake_encoders, tmp_path):
    with pytest.raises(InputError, match="none fits by estimate"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", dense_index="auto",
                         max_memory="10", **FAKE)
    with pytest.raises(InputError, match="FAISS factory string for --dense-index"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", dense_index="Bogus7", **FAKE)
    with pytest.raises(InputError, match="expected --dense-index auto"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", max_query_ms=5, **FAKE)
    with pytest.raises(InputError, match="expected --dense-rerank .* with an explicit FAISS factory"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", dense_rerank=4, **FAKE)
    assert fake_encoders["fake-image"].calls == 0
