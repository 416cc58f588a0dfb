"""Reencoding: a collection's corpus encoded again by a new encoder, a chunk at a time, resumable
after a crash with nothing encoded twice, atomic at the end, and equal to a fresh build with the
new encoder."""

import numpy as np
import pytest

from retrieval import Collection, build_collection
from retrieval.api import reencode
from retrieval.build.reencode import work_folder
from retrieval.cli.main import main
from retrieval.errors import InputError

from .test_stitching import RotatedImage

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
QUERIES = ["a red square", "blue", "a green box", "yellow thing"]


class Flaky(RotatedImage):
    """The rotated encoder that dies after ``budget`` items: a reencode killed half-way."""

    budget = None

    def _encode_batch(self, batch):
        if Flaky.budget is not None:
            if Flaky.budget < len(batch):
                raise RuntimeError("killed")
            Flaky.budget -= len(batch)
        return super()._encode_batch(batch)


@pytest.fixture
def rotated(fake_encoders, monkeypatch):
    from retrieval.encoders import registry

    made = []

    def make(arg, *, name, device, modality):
        made.append(Flaky(name, device))
        return made[-1]

    reg = dict(registry.REGISTRY)
    reg["fake-image-rotated"] = registry.Backend(("image",), False, True, "test", make)
    monkeypatch.setattr(registry, "REGISTRY", reg)
    Flaky.budget = None
    return made


def test_reencode_equals_a_fresh_build_with_the_new_encoder(tiny_data, rotated, tmp_path):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", index="inverted:float32", **FAKE)
    fresh = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "f",
                                             index="inverted:float32", **dict(FAKE, image_encoder="fake-image-rotated")))
    col = Collection.open(reencode(old, image_encoder="fake-image-rotated", chunk=3, cache_dir=""))
    m = col.manifest
    assert m["encoders"]["image"]["spec"] == "fake-image-rotated" and m["reencoded"]["from"] == {"image": "fake-image"}
    assert m["indexes"]["image_relative"]["backend"] == "inverted" and not work_folder(old).exists()
    np.testing.assert_allclose(np.asarray(col.sides["image"].abs), np.asarray(fresh.sides["image"].abs), atol=1e-6)
    for q in QUERIES:
        assert [h.id for h in col.search(q, k=4)] == [h.id for h in fresh.search(q, k=4)]
    img = tiny_data["corpus_images"][1]
    assert [h.id for h in col.search(img, k=3)] == [h.id for h in fresh.search(img, k=3)]


def test_a_killed_reencode_resumes_without_encoding_again(tiny_data, rotated, tmp_path):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    before = (old / "manifest.json").read_text()
    Flaky.budget = 5  # anchors (8) are encoded after the corpus: 5 corpus items, i.e. chunk 0 (3) then dies in chunk 1
    with pytest.raises(RuntimeError, match="killed"):
        reencode(old, image_encoder="fake-image-rotated", chunk=3, cache_dir="")
    assert (old / "manifest.json").read_text() == before  # the old collection answers as before
    assert sorted(p.name for p in work_folder(old).glob("items-*.npy")) == ["items-00000.npy"]
    Flaky.budget = None  # meanwhile, a query by the new encoder reaches the old collection (stitching)
    assert Collection.open(old, image_encoder="fake-image-rotated").search(tiny_data["corpus_images"][0], k=1)
    with pytest.raises(InputError, match="reencode of the same settings"):
        reencode(old, image_encoder="fake-image-rotated", chunk=4, cache_dir="")
    rotated.clear()
    col = Collection.open(reencode(old, image_encoder="fake-image-rotated", chunk=3, cache_dir=""))
    assert sum(e.calls for e in rotated) == 8 - 3 + 8  # the 5 corpus items not done, then the 8 anchors
    assert col.manifest["encoders"]["image"]["spec"] == "fake-image-rotated" and not work_folder(old).exists()


def test_what_cannot_be_reencoded_is_refused(tiny_data, rotated, tmp_path, capsys):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    with pytest.raises(InputError, match="expected an encoder other than the collection's"):
        reencode(old, image_encoder="fake-image")
    rotated.clear()
    with pytest.raises(InputError, match="which exists; pass --overwrite"):  # before any encoding
        reencode(old, tmp_path / "corpus", image_encoder="fake-image-rotated")
    assert all(e.calls == 0 for e in rotated) and not work_folder(old).exists()
    assert main(["reencode", str(old), "--chunk", "0", "--image-encoder", "fake-image-rotated"]) == 2
    assert "chunk size >= 1" in capsys.readouterr().err
    (tmp_path / "corpus" / "red.png").unlink()
    with pytest.raises(InputError, match="1 are missing"):
        reencode(old, image_encoder="fake-image-rotated")
    assert not work_folder(old).exists()


def png(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_a_server_answers_through_a_reencode_and_then_serves_the_new_collection(tiny_data, rotated, tmp_path):
    """The upgrade in place: a server asked for the new encoder stitches its queries to the old
    collection while the corpus is re-encoded beside it, then reopens the re-encoded folder by itself
    (the old collection answering until the swap), and keeps the old one when a rewrite cannot open."""
    pytest.importorskip("fastapi")
    import time

    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    fresh = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "f",
                                             **dict(FAKE, image_encoder="fake-image-rotated")))
    app = create_app({"c": str(old)}, query_encoders={"image_encoder": "fake-image-rotated"}, reload_s=0.05)
    client = TestClient(app, raise_server_exceptions=False)
    img = tiny_data["corpus_images"][2]

    def ask():
        r = client.post("/collections/c/search/file", files={"file": ("q.png", png(img), "image/png")},
                        data={"k": "4", "target": "text"})
        assert r.status_code == 200, r.text
        return [h["id"] for h in r.json()["results"]]

    def plan():
        return client.get("/collections/c/explain", params={"modality": "image", "target": "text"}).json()["text"]

    assert "fake-image-rotated encodes them" in plan()  # stitched: the collection still holds fake-image vectors
    stitched = ask()
    reencode(old, image_encoder="fake-image-rotated", chunk=3, cache_dir="")
    live = app.state.collections["c"]
    deadline = time.monotonic() + 30
    while live.reloads == 0 and time.monotonic() < deadline:  # each request looks; the reopen runs beside
        time.sleep(0.06)
        assert ask() in (stitched, [h.id for h in fresh.search(img, k=4, target="text")])
    assert live.reloads == 1 and client.get("/health").json() == {"status": "ok", "collections": ["c"]}
    assert client.get("/collections/c").json()["encoders"]["image"]["spec"] == "fake-image-rotated"
    assert "encodes them" not in plan()  # no stitch now: the query encoder is the collection's own
    assert ask() == [h.id for h in fresh.search(img, k=4, target="text")]

    (old / "manifest.json").unlink()  # a rewrite that cannot open: a folder copied by hand, say
    (old / "manifest.json").write_text("{not json")
    assert live.reload() is False and "manifest" in client.get("/health").json()["not_reopened"]["c"]
    assert ask() == [h.id for h in fresh.search(img, k=4, target="text")]  # the collection served before


def test_serve_refuses_a_negative_reload_interval(capsys):
    assert main(["serve", "nowhere", "--reload-every", "-1"]) == 2
    assert "expected --reload-every to be 0 (never) or a number of seconds, got -1.0" in capsys.readouterr().err
