"""The HTTP API over the fake-encoder collections: every endpoint, and bad input of every kind gets
a JSON error with the right 4xx status (never a stack trace)."""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from retrieval import build_collection  # noqa: E402
from retrieval.serve.server import create_app  # noqa: E402

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", audio_encoder="fake-audio", cache_dir="",
            k=3, p=2.0)


@pytest.fixture
def client(tiny_data, tone_data, fake_encoders, tmp_path):
    img = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "squares",
                           pivots=[tone_data["anchors"]], **FAKE)
    snd = build_collection(tone_data["corpus"], tone_data["anchors"], tmp_path / "tones", **FAKE)
    app = create_app({"squares": str(img), "tones": str(snd)}, limits={"max_body_bytes": 200_000, "max_k": 20,
                                                                         "max_image_pixels": 1_000_000})
    with TestClient(app, raise_server_exceptions=False) as c:
        c.data = {"tiny": tiny_data, "tones": tone_data, "folder": img}
        yield c


def png_bytes(colour=(220, 30, 30), size=24):
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def test_health_collections_and_page(client):
    assert client.get("/health").json() == {"status": "ok", "collections": ["squares", "tones"]}
    info = client.get("/collections").json()
    assert info["squares"]["modality"] == "image" and info["tones"]["modality"] == "audio"
    assert client.get("/collections/tones").json()["counts"]["items"] == 8
    page = client.get("/")
    assert page.status_code == 200 and "<title>retrieval</title>" in page.text and "http" not in page.text.split("<script>")[0].lower().replace("http-equiv", "")
    assert "openapi" in client.get("/openapi.json").json()


def test_search_by_text_vector_and_file(client):
    r = client.post("/collections/squares/search", json={"query": "a red square", "k": 3}).json()
    assert r["route"] == "relative" and len(r["results"]) == 3 and r["results"][0]["label"] is None
    top = r["results"][0]
    assert top["file"] == "red.png" and top["url"] == f"/collections/squares/items/{top['id']}/file"
    assert "path" not in top  # where the server keeps its files is not said
    red = Path(client.data["tiny"]["corpus"]) / "red.png"
    assert client.get(top["url"]).content == red.read_bytes()
    # by vector: the same text's embedding gives the same answer
    from retrieval import Collection

    vec = Collection.open(client.data["folder"]).encoder("text").encode(["a red square"])[0].tolist()
    r2 = client.post("/collections/squares/search", json={"vector": vec, "modality": "text", "k": 3}).json()
    assert [h["id"] for h in r2["results"]] == [h["id"] for h in r["results"]]
    # by uploaded image and by uploaded sound (the pivot route)
    r3 = client.post("/collections/squares/search/file", files={"file": ("q.png", png_bytes(), "image/png")},
                     data={"k": "2"}).json()
    assert r3["modality"] == "image" and r3["results"][0]["file"] == "red.png"
    wav = Path(client.data["tones"]["corpus"]) / "blue.wav"
    r4 = client.post("/collections/squares/search/file", files={"file": ("blue.wav", wav.read_bytes(), "audio/wav")}).json()
    assert r4["route"] == "pivot" and r4["results"][0]["file"] == "blue.png"
    r5 = client.post("/collections/tones/search", json={"query": "a yellow noise", "k": 1}).json()
    assert r5["results"][0]["file"] == "yellow.wav"


def test_classify_and_explain(client):
    r = client.post("/collections/squares/classify", files={"file": ("q.png", png_bytes((30, 40, 220)), "image/png")},
                    data={"labels": "red, green, blue", "template": "a {} square", "k": "2"}).json()
    assert r["labels"][0] == "blue" and len(r["labels"]) == 2
    assert r["signals"] == ["asif"] and r["abstained"] is False
    assert r["probabilities"] == sorted(r["probabilities"], reverse=True) and 0 < sum(r["probabilities"]) <= 1
    sure = client.post("/collections/squares/classify", files={"file": ("q.png", png_bytes((30, 40, 220)), "image/png")},
                       data={"labels": "red, green, blue", "template": "a {} square", "abstain": "1"}).json()
    assert sure["abstained"] is True and sure["labels"][0] == "blue"  # still says what it would have answered
    one = client.post("/collections/squares/classify", files={"file": ("q.png", png_bytes(), "image/png")},
                      data={"labels": "red"})
    assert one.status_code == 422 and "labels" in one.json()["error"]  # the schema asks for two or more
    same = client.post("/collections/squares/classify", files={"file": ("q.png", png_bytes(), "image/png")},
                       data={"labels": "red, red"})  # fits the schema, but is one label
    assert same.status_code == 400 and "expected 2 to" in same.json()["error"]
    e = client.get("/collections/squares/explain", params={"modality": "audio"}).json()
    assert e["route"] == "pivot" and e["via"] == "text" and "pivot into text" in e["text"]


def test_metrics_count_requests_and_stages(client):
    client.post("/collections/squares/search", json={"query": "a red square"})
    text = client.get("/metrics").text
    assert 'retrieval_requests_total{endpoint="collections",status="200"}' in text
    assert 'retrieval_stage_seconds_count{collection="squares",stage="encode"}' in text
    assert 'stage="relativise"' in text and 'stage="search"' in text


@pytest.mark.parametrize("method,url,kwargs,status,message", [
    # what the OpenAPI spec rules out is 422, with the field named; what it allows but this collection
    # cannot answer is 409; other bad input 400
    ("post", "/collections/squares/search", {"json": {"query": ""}}, 422, "body.query: expected a non-empty text query"),
    ("post", "/collections/squares/search", {"json": {"query": "   "}}, 422, "body.query: expected a text query with something"),
    ("post", "/collections/squares/search", {"json": {"query": "x" * 1001}}, 422, "at most 1000 characters"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "k": 0}}, 422, "body.k: Input should be greater"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "k": 21}}, 422, "less than or equal to 20"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "k": "many"}}, 422, "body.k"),
    ("post", "/collections/squares/search", {"json": {}}, 422, "exactly one of 'query' (text) or 'vector'"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "vector": [1.0]}}, 422, "exactly one of"),
    ("post", "/collections/squares/search", {"json": {"vector": [1.0, 2.0]}}, 422, "at least 32 items"),
    ("post", "/collections/squares/search", {"json": {"vector": [1.0], "modality": "smell"}}, 422,
     "modality: expected one of ['audio', 'image', 'text']"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "route": "teleport"}}, 422, "body.route"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "target": "smell"}}, 422, "body.target"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "target": "audio"}}, 409, "expected a target"),
    ("post", "/collections/squares/search", {"json": {"query": "a", "target": "text", "route": "fusion"}}, 409,
     "route 'fusion' is impossible from text to text"),
    ("post", "/collections/tones/search", {"json": {"vector": [0.1] * 24, "modality": "image"}}, 409,
     "expected vectors of one of this collection's modalities"),
    ("post", "/collections/nope/search", {"json": {"query": "a"}}, 404, "unknown collection 'nope'"),
    ("post", "/collections/squares/search", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "is not JSON"),
    ("get", "/collections/squares/items/999/file", {}, 404, "expected an item id"),
    ("get", "/collections/squares/items/..%2F..%2Fetc%2Fpasswd/file", {}, 404, "Not Found"),
    ("get", "/collections/squares/items/%2E%2E/file", {}, 422, "invalid request"),
    ("get", "/collections/..%2F..%2Fetc/items/0/file", {}, 404, "Not Found"),
    ("get", "/collections/squares/items/-1/file", {}, 404, "expected an item id"),
    ("get", "/collections/squares/explain?modality=smell", {}, 422, "query.modality"),
    ("get", "/collections/tones/explain?modality=image", {}, 409, "got a query in 'image'"),
    ("delete", "/collections/squares", {}, 405, "Method Not Allowed"),
])
def test_bad_requests_get_json_errors(client, method, url, kwargs, status, message):
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"] and "Traceback" not in r.text
    if status == 405:
        assert r.headers["allow"] == "GET"


def test_the_fast_lane_answers_as_the_route_does(client, monkeypatch):
    """A JSON search is answered by the fast lane (fastlane.py); the same body as another JSON type
    (``application/...+json``, which FastAPI parses as JSON) goes through FastAPI's route: same status,
    headers and answer."""
    import json

    from retrieval import Collection
    from retrieval.serve.fastlane import FastLane

    taken = []
    parsed = FastLane._parsed
    monkeypatch.setattr(FastLane, "_parsed", lambda self, raw: taken.append(raw) or parsed(self, raw))
    vec = Collection.open(client.data["folder"]).encoder("text").encode(["a blue square"])[0].tolist()
    bodies = [("squares", {"query": "a red square", "k": 3}), ("squares", {"query": "a red square", "k": 20}),
              ("squares", {"vector": vec, "modality": "text", "k": 4}),
              ("squares", {"query": "a", "target": "text", "route": "fusion"}),  # 409 while answering
              ("tones", {"query": "a yellow noise", "k": 2, "caption_match": False}),
              ("nope", {"query": "a"}),  # 404
              ("squares", {"query": "a", "k": 0})]  # 422: invalid, handed on to FastAPI
    for name, body in bodies:
        raw = json.dumps(body).encode()
        fast = client.post(f"/collections/{name}/search", content=raw, headers={"content-type": "application/json"})
        assert taken and taken.pop() == raw
        routed = client.post(f"/collections/{name}/search", content=raw,
                             headers={"content-type": "application/x-search+json"})
        assert not taken  # not the fast lane's
        assert (fast.status_code, fast.json(), fast.headers["content-type"]) == \
            (routed.status_code, routed.json(), routed.headers["content-type"]), body
        assert fast.status_code == {"nope": 404}.get(name, 409 if "route" in body else 422 if body.get("k") == 0
                                                       else 200)


def test_bad_uploads(client):
    url = "/collections/squares/search/file"
    r = client.post(url, files={"file": ("notes.txt", b"just text", "text/plain")})
    assert r.status_code == 400 and "expected a readable image" in r.json()["error"] and "'notes.txt'" in r.text
    assert "BytesIO" not in r.text and " at 0x" not in r.text  # no Python object address leaks out
    truncated = png_bytes(size=64)[:60]
    r = client.post(url, files={"file": ("cut.png", truncated, "image/png")})
    assert r.status_code == 400 and "expected a readable image" in r.json()["error"]
    r = client.post(url, files={"file": ("empty.png", b"", "image/png")})
    assert r.status_code == 400 and "non-empty file" in r.json()["error"]
    big = io.BytesIO()
    Image.new("L", (2000, 1000)).save(big, "PNG")  # 2 Mpx of black compresses to a few kB: a small bomb
    r = client.post(url, files={"file": ("bomb.png", big.getvalue(), "image/png")})
    assert r.status_code == 400 and "at most 1,000,000 pixels, got 'bomb.png', of 2000 x 1000" in r.json()["error"]
    r = client.post(url, files={"file": ("huge.png", b"\0" * 300_000, "image/png")})
    assert r.status_code == 413 and "at most 200000 bytes" in r.json()["error"]
    r = client.post("/collections/tones/classify", files={"file": ("q.png", png_bytes(), "image/png")},
                    data={"labels": "a, b"})
    assert r.status_code == 409 and "expected a sound file" in r.json()["error"]
    # a sound sent to an image collection's classifier is refused, and its temporary copy removed
    import tempfile

    before = set(os.listdir(tempfile.gettempdir()))
    wav = Path(client.data["tones"]["corpus"]) / "red.wav"
    r = client.post("/collections/squares/classify", files={"file": ("red.wav", wav.read_bytes(), "audio/wav")},
                    data={"labels": "a, b"})
    assert r.status_code == 409 and "expected an image file" in r.json()["error"]
    assert not [f for f in set(os.listdir(tempfile.gettempdir())) - before if f.endswith(".wav")]


def test_symlinks_out_of_the_corpus_are_not_served(client, tmp_path):
    from retrieval import Collection

    col = Collection.open(client.data["folder"])
    victim = Path(col.items["path"][0])
    secret = tmp_path / "secret.txt"
    secret.write_text("not for you")
    victim.unlink()
    os.symlink(secret, victim)  # the corpus file now points outside its folder
    r = client.get(f"/collections/squares/items/{col.item_ids[0]}/file")
    assert r.status_code == 403 and "not for you" not in r.text


def test_slow_requests_time_out_with_a_json_503(tiny_data, fake_encoders, tmp_path, monkeypatch):
    import time

    from retrieval.serve.state import Served

    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)
    slow = Served.search_group  # the batcher's answering stage
    monkeypatch.setattr(Served, "search_group", lambda self, *a: (time.sleep(0.5), slow(self, *a))[1])
    app = create_app({"c": str(col)}, limits={"request_timeout_s": 0.05})
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/collections/c/search", json={"query": "a red square"})
    assert r.status_code == 503 and "took longer than" in r.json()["error"]
