"""The label bridge (retrieval/encoders/labels.py): label vectors stored at build, the relative+labels route
exact against brute force on every index backend, kept right by add and delete, refused where no
classifier head exists."""

import json

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.core.ranking import topk_with_ties
from retrieval.encoders.labels import label_vectors
from retrieval.errors import InputError

from .conftest import solid

LAB = dict(image_encoder="fake-labelled-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
QUERIES = ["a red square", "a green square", "something blue", "yellow", "a black and grey thing"]


def brute_force(col, query, k):
    """Every item's ASIF score plus weight x label cosine, ranked as the engine ranks."""
    q = col.encoder("text").encode([query])
    pq_, pi = col.projectors["text"], col.projectors[col.modality]
    items = np.asarray(col.sides[col.modality].abs)
    prim = np.asarray((pi.transform(items) @ pq_.transform_rows(q).T).todense(), np.float64).ravel()
    combined = prim + col.manifest["labels"]["weight"] * (np.asarray(col.item_labels, np.float64) @ q[0])
    qd = pq_.dense(q, np.float64)[0]
    ids, scores, _ = topk_with_ties(combined, k, lambda c: pi.dense(items[c], np.float64) @ qd)
    return ids.tolist(), scores


@pytest.mark.parametrize("index", ["exact", "inverted:float32", "faiss", "torch"])
def test_labelled_route_is_exact_on_every_backend(tiny_data, fake_encoders, tmp_path, index):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", index=index,
                                           label_weight=0.5, **LAB))
    m = col.manifest
    assert m["labels"]["count"] == 8 and m["labels"]["weight"] == 0.5 and m["labels"]["file"] == "image_labels.npy"
    assert col.plan("text").route == "relative+labels" and "label bridge" in col.plan("text").explain()
    for q in QUERIES:
        for k in (1, 3, 8):
            hits = col.search(q, k=k, captions=False)  # the route alone, without the caption match
            ids, scores = brute_force(col, q, k)
            assert [col.item_row(h.id) for h in hits] == ids, (index, q, k)
            np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
    # the plain relative route is still there, and differs
    assert col.search("a red square", k=8, route="relative")[0].path.endswith("red.png")


def test_label_vectors_follow_add_and_delete(tiny_data, fake_encoders, tmp_path):
    half = tmp_path / "half"
    half.mkdir()
    for c in tiny_data["colours"][:4]:
        solid(half / f"{c}.png", c, size=24)
    more = tmp_path / "more"
    more.mkdir()
    for c in tiny_data["colours"][4:]:
        solid(more / f"{c}.png", c, size=24)
    col = Collection.open(build_collection(half, tiny_data["anchors"], tmp_path / "c", **LAB)).add(more)
    fresh = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "f", **LAB))
    by_name = {p.rsplit("/", 1)[1]: i for i, p in enumerate(col.items["path"])}
    fresh_rows = [by_name[p.rsplit("/", 1)[1]] for p in fresh.items["path"]]
    np.testing.assert_allclose(np.asarray(col.item_labels)[fresh_rows], fresh.item_labels, atol=1e-6)
    col = col.delete([col.item_ids[0]])
    assert col.item_labels.shape == (7, 32)
    for q in QUERIES:
        assert [col.item_row(h.id) for h in col.search(q, k=3)] == brute_force(col, q, 3)[0]


def test_labels_are_optional_and_refused_without_a_head(tiny_data, fake_encoders, tmp_path):
    plain = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "a",
                                             labels=False, **LAB))
    assert "labels" not in plain.manifest and plain.plan("text").route == "relative"
    with pytest.raises(InputError, match="classifier head"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b", labels=True,
                         **dict(LAB, image_encoder="fake-image"))
    with pytest.raises(InputError, match="label weight"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "b", label_weight=-1, **LAB)
    # a collection without labels (the fake encoder has no head) is unchanged
    none = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "n",
                                            **dict(LAB, image_encoder="fake-image")))
    assert "labels" not in none.manifest and none.item_labels is None
    assert json.loads((none.folder / "manifest.json").read_text())["bridges"][-1]["kind"] == "translator"


def test_label_vectors_are_the_softmax_mean_of_class_texts():
    classes = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    v = label_vectors(np.array([[0.0, 0.0], [10.0, -10.0]]), classes)
    np.testing.assert_allclose(v, [[2 ** -0.5, 2 ** -0.5], [1.0, 0.0]], atol=1e-6)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)


def test_items_beyond_the_relative_list_are_found_when_their_label_lifts_them(tiny_data, fake_encoders, tmp_path):
    """More items than the route's first list (100): a heavy label weight must still give the exact
    ranking, by scoring the items whose label term could lift them into the top k."""
    from PIL import Image

    rng = np.random.default_rng(0)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(260):
        img = Image.new("RGB", (24, 24), (255, 255, 255))
        img.paste(Image.new("RGB", (16, 16), tuple(int(v) for v in rng.integers(0, 230, 3))), (4, 4))
        img.save(big / f"{i:03d}.png")
    for weight in (0.5, 3.0):
        col = Collection.open(build_collection(big, tiny_data["anchors"], tmp_path / f"c{weight}", label_weight=weight,
                                               overwrite=True, **dict(LAB, k=2)))
        for q in QUERIES:
            for k in (1, 10, 40):
                assert [col.item_row(h.id) for h in col.search(q, k=k)] == brute_force(col, q, k)[0], (weight, q, k)


def test_label_refusals_come_before_any_encoding(tiny_data, fake_encoders, tmp_path):
    for bad in (dict(labels=True, **dict(LAB, image_encoder="fake-image")), dict(label_weight=float("nan"), **LAB)):
        with pytest.raises(InputError):
            build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", **bad)
        assert all(e.calls == 0 for e in fake_encoders.values())  # not one anchor or corpus file encoded
    assert not (tmp_path / "x").exists()
