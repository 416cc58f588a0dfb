"""Zero-shot stitching: a query encoder other than the build's reaches the collection through the
anchors encoded by both. Checked with an encoder that is the build's one rotated (cosines, and so
relative vectors, are unchanged by a rotation: the stitched relative route must give exactly the
build's answers), and on the refusals: anchors' files gone, another modality."""

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.errors import InputError

from .conftest import FakeImageEncoder, FakeTextEncoder

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0, center=False)
ROT = np.linalg.qr(np.random.default_rng(0).normal(size=(24, 24)))[0].astype(np.float32)


class RotatedImage(FakeImageEncoder):
    """The build's image encoder seen through a fixed rotation: another space, the same geometry."""

    def __init__(self, name="fake-image-rotated", device="cpu"):
        super().__init__(name, device)

    def _encode_batch(self, batch):
        return super()._encode_batch(batch) @ ROT


class ShiftedText(FakeTextEncoder):
    def __init__(self, name="fake-text-shifted", device="cpu"):
        super().__init__(name, device)

    def _encode_batch(self, batch):
        # scaled by a power of two: after normalisation the same bits, so the bag of words' many exact
        # ties among anchors stay ties (a permutation would reorder them by rounding)
        return super()._encode_batch(batch) * 4.0


def test_a_rotated_encoder_stitches_exactly(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    plain = Collection.open(out)
    col = Collection.open(out, image_encoder=RotatedImage())
    assert "image" in col.stitched and col.encoder("image").name == "fake-image-rotated"
    p = col.plan("image", "text")
    assert p.query.encoder == "fake-image-rotated" and {r.route for r in p.alternatives} == {"relative", "stitch"}
    assert "anchors as fake-image-rotated encodes them" in col.plan("image", "text", "relative").explain()
    for img in tiny_data["corpus_images"]:
        want = plain.search(img, k=4, target="text", route="relative")
        got = col.search(img, k=4, target="text", route="relative")
        assert [h.id for h in got] == [h.id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
        # image -> image: the stitched relative route over the items' relative vectors finds the colour
        assert col.search(img, k=1, route="relative")[0].path == img.replace("corpus", "corpus")
    assert col.search(tiny_data["corpus_images"][0], k=3, route="stitch")  # mapped, then the absolute route


def test_a_stitched_text_encoder_uses_the_stored_captions(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    plain, col = Collection.open(out), Collection.open(out, text_encoder=ShiftedText())
    for q in ("a red square", "green", "a blue box"):
        assert [h.id for h in col.search(q, k=3, route="relative")] == [h.id for h in plain.search(q, k=3, route="relative")]


def test_stitching_refuses_what_it_cannot_do(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    with pytest.raises(InputError, match="expected a image encoder to stitch"):
        Collection.open(out, image_encoder=FakeTextEncoder(name="other-text"))
    for f in (tiny_data["root"] / "anchors").iterdir():
        f.unlink()
    with pytest.raises(InputError, match="anchors' image files to encode them with the query's encoder, but 8 of 16"):
        Collection.open(out, image_encoder=RotatedImage())
    assert Collection.open(out).search("a red square", k=1)  # the collection itself needs no anchor files


def test_cli_search_and_explain_with_another_encoder(tiny_data, fake_encoders, tmp_path, capsys, monkeypatch):
    from retrieval.encoders import registry

    reg = dict(registry.REGISTRY)
    reg["fake-image-rotated"] = registry.Backend(("image",), False, True, "test",
                                                 lambda arg, *, name, device, modality: RotatedImage(name, device))
    monkeypatch.setattr(registry, "REGISTRY", reg)
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    img = tiny_data["corpus_images"][0]
    assert main(["explain", str(out), "--image", img, "--target", "text", "--image-encoder", "fake-image-rotated"]) == 0
    assert "image (fake-image-rotated) -> text (fake-text): route" in capsys.readouterr().out
    assert main(["search", str(out), "--image", img, "--target", "items", "--image-encoder", "fake-image-rotated",
                 "--route", "relative", "-k", "1", "--json"]) == 0
    assert img in capsys.readouterr().out


def test_the_server_stitches_queries_too(tiny_data, fake_encoders, tmp_path, monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.encoders import registry
    from retrieval.serve.server import create_app

    reg = dict(registry.REGISTRY)
    reg["fake-text-scaled"] = registry.Backend(("text",), False, True, "test",
                                               lambda arg, *, name, device, modality: ShiftedText(name, device))
    monkeypatch.setattr(registry, "REGISTRY", reg)
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    client = TestClient(create_app({"c": str(out)}, query_encoders={"text_encoder": "fake-text-scaled"}))
    got = client.post("/collections/c/search", json={"query": "a red square", "k": 3, "route": "relative"}).json()
    want = [h.id for h in Collection.open(out).search("a red square", k=3, route="relative")]
    assert [r["id"] for r in got["results"]] == want
    explain = client.get("/collections/c/explain", params={"query": "a red square"}).json()
    assert explain["query"]["encoder"] == "fake-text-scaled"
