"""Micro-batching: concurrent searches answered together give exactly the answers each would get
alone; a failing query fails alone; a full queue is refused at once with 503 and Retry-After."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from retrieval.serve.batching import MicroBatcher, QueueFull

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from retrieval import build_collection  # noqa: E402
from retrieval.serve.server import create_app  # noqa: E402

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
QUERIES = ["a red square", "blue", "a green box", "yellow thing", "red", "a blue square", "green", "a box"]


def test_the_batcher_gathers_groups_and_keeps_order():
    calls = []

    def run(key, payloads):
        calls.append((key, list(payloads)))
        time.sleep(0.02)  # while one batch runs, the next gathers
        return [f"{key}:{p}" for p in payloads]

    b = MicroBatcher(run, max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(24) as pool:
        got = list(pool.map(lambda i: b.submit("even" if i % 2 == 0 else "odd", i), range(24)))
    assert got == [f"{'even' if i % 2 == 0 else 'odd'}:{i}" for i in range(24)]
    assert all(len(p) <= 8 and all((x % 2 == 0) == (k == "even") for x in p) for k, p in calls)
    assert max(len(p) for _, p in calls) > 1 and sum(len(p) for _, p in calls) == 24


def test_a_failing_query_fails_alone():
    def run(key, payloads):
        if "bad" in payloads:
            raise ValueError(f"cannot take {payloads}")
        return [p.upper() for p in payloads]

    b = MicroBatcher(run, max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(b.submit, "k", p) for p in ("a", "bad", "c", "d")]
        assert futs[0].result() == "A" and futs[2].result() == "C" and futs[3].result() == "D"
        with pytest.raises(ValueError, match=r"cannot take \['bad'\]"):
            futs[1].result()


def test_with_a_prepare_step_the_next_batch_is_prepared_while_one_is_answered():
    prepared_twice, threads = threading.Event(), {"prepare": set(), "run": set()}
    calls = []

    def prepare(key, payloads):
        threads["prepare"].add(threading.get_ident())
        calls.append(list(payloads))
        if len(calls) == 2:
            prepared_twice.set()
        return [p * 10 for p in payloads]

    def run(key, prepared):
        threads["run"].add(threading.get_ident())
        # the first batch is answered only once the second is prepared: a pipeline, not one after the other
        assert prepared_twice.wait(5), "the second batch was not prepared while the first was answered"
        return [p + 1 for p in prepared]

    b = MicroBatcher(run, prepare=prepare, max_batch=4, max_wait_s=0.01, idle_exit_s=0.2)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(b.submit, "k", 0)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:  # the first batch is taken alone
            time.sleep(0.005)
        rest = list(pool.map(lambda i: b.submit("k", i), range(1, 8)))
    assert first.result() == 1 and rest == [10 * i + 1 for i in range(1, 8)]
    assert threads["prepare"].isdisjoint(threads["run"]) and len(calls) >= 2
    deadline = time.monotonic() + 5
    ours = threads["prepare"] | threads["run"]
    while any(t.ident in ours for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b._alive == 0 and not any(t.ident in ours for t in threading.enumerate())  # idle: both stages exit
    assert b.submit("k", 9) == 91  # and start again on demand


def test_with_a_prepare_step_a_query_that_fails_to_prepare_fails_alone():
    def prepare(key, payloads):
        if "bad" in payloads:
            raise ValueError(f"cannot prepare {payloads}")
        return [p.upper() for p in payloads]

    b = MicroBatcher(lambda key, prepared: [p + "!" for p in prepared], prepare=prepare, max_batch=8,
                     max_wait_s=0.05)
    with ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(b.submit, "k", p) for p in ("a", "bad", "c", "d")]
        assert [futs[i].result() for i in (0, 2, 3)] == ["A!", "C!", "D!"]
        with pytest.raises(ValueError, match=r"cannot prepare \['bad'\]"):
            futs[1].result()
    alone = MicroBatcher(lambda key, prepared: prepared, prepare=prepare, max_batch=8, max_wait_s=0.001)
    with pytest.raises(ValueError, match="cannot prepare"):  # a batch of one: its error is its answer
        alone.submit("k", "bad", timeout=5)


def test_a_full_queue_refuses_at_once_and_an_idle_worker_exits():
    release = threading.Event()

    def run(key, payloads):
        release.wait(5)
        return payloads

    b = MicroBatcher(run, max_batch=1, max_wait_s=0.001, max_queue=2, idle_exit_s=0.2)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(b.submit, "k", 1)
        deadline = time.monotonic() + 5
        while not b.batches and time.monotonic() < deadline:  # the worker holds query 1
            time.sleep(0.01)
        waiting = [pool.submit(b.submit, "k", i) for i in (2, 3)]  # the queue's two places
        time.sleep(0.05)
        t = time.monotonic()
        with pytest.raises(QueueFull, match="2 queries are already waiting"):
            b.submit("k", 4)
        assert time.monotonic() - t < 0.5  # refused, not kept waiting
        release.set()
        assert [first.result(), *(w.result() for w in waiting)] == [1, 2, 3]
    deadline = time.monotonic() + 5
    while b._alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b._alive == 0 and b.submit("k", 5) == 5  # started again on demand
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(run, max_batch=0)


def png(colour):
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tiny_data, fake_encoders, tmp_path):
    return build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **FAKE)


def same(got, want):
    """The same answers: every field equal, scores to float32 rounding (a product of many query rows
    rounds in another order than a product of one), secondary scores (float64) to 1e-12."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        scores = [(r.pop("score"), x.pop("score")) for r, x in zip(g["results"], w["results"])]
        second = [(r.pop("secondary", None), x.pop("secondary", None)) for r, x in zip(g["results"], w["results"])]
        assert [a is None for a, _ in second] == [b is None for _, b in second]
        second = [(a, b) for a, b in second if a is not None]
        assert g == w
        if scores:
            np.testing.assert_allclose(*zip(*scores), rtol=1e-6, atol=1e-7)
        if second:
            np.testing.assert_allclose(*zip(*second), rtol=1e-12, atol=1e-12)


def test_batched_answers_equal_one_at_a_time(folder):
    alone = TestClient(create_app({"c": str(folder)}, batching={"max_wait_ms": 0}))
    app = create_app({"c": str(folder)}, batching={"max_wait_ms": 50, "max_batch": 16})
    batched = TestClient(app)

    def ask(client, body):
        r = client.post("/collections/c/search", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    bodies = [{"query": q, "k": k} for q in QUERIES for k in (3, 5)]
    vec = [float(x) for x in np.random.default_rng(0).normal(size=32)]
    bodies += [{"vector": vec, "modality": "text", "k": 4}, {"query": "red", "k": 3, "target": "text"},
               {"query": "red", "k": 3, "route": "relative"}]
    want = [ask(alone, b) for b in bodies]
    with ThreadPoolExecutor(len(bodies)) as pool:
        same(list(pool.map(lambda b: ask(batched, b), bodies)), want)
    assert max(app.state.batcher.batches) > 1  # they were batched
    files = [("red.png", png("red")), ("blue.png", png("blue")), ("green.png", png("green"))]

    def ask_file(client, f):
        r = client.post("/collections/c/search/file", files={"file": (f[0], f[1], "image/png")}, data={"k": "3"})
        assert r.status_code == 200, r.text
        return r.json()

    want = [ask_file(alone, f) for f in files]
    with ThreadPoolExecutor(3) as pool:
        same(list(pool.map(lambda f: ask_file(batched, f), files)), want)
    metrics = batched.get("/metrics").text
    assert "retrieval_batch_queries_count" in metrics


def test_bad_queries_in_a_batch_get_their_own_errors(folder):
    client = TestClient(create_app({"c": str(folder)}, batching={"max_wait_ms": 50}), raise_server_exceptions=False)
    vec = ", ".join(["0.5"] * 31)
    good = '{"vector": [1.0, %s], "modality": "text", "k": 3}' % vec
    infinite = '{"vector": [1e999, %s], "modality": "text", "k": 3}' % vec  # valid JSON, refused by the search

    def post(body):
        return client.post("/collections/c/search", content=body, headers={"content-type": "application/json"})

    with ThreadPoolExecutor(3) as pool:
        rs = list(pool.map(post, [good, infinite, good]))
    assert [r.status_code for r in rs] == [200, 400, 200], [r.text for r in rs]
    assert "expected finite text vectors" in rs[1].json()["error"] and rs[0].json() == rs[2].json()


def test_a_full_queue_answers_503_with_retry_after(folder, monkeypatch):
    from retrieval.serve import batching

    monkeypatch.setattr(batching.MicroBatcher, "submit_future", lambda self, *a, **k: (_ for _ in ()).throw(
        QueueFull("256 queries are already waiting")))
    client = TestClient(create_app({"c": str(folder)}), raise_server_exceptions=False)
    r = client.post("/collections/c/search", json={"query": "red"})
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
    with pytest.raises(Exception, match="unknown batching settings \\['wait'\\]"):
        create_app({"c": str(folder)}, batching={"wait": 1})


def test_the_dense_vector_cache_is_bounded_by_the_server_setting(folder):
    app = create_app({"c": str(folder)}, dense_cache_mb=0)
    client = TestClient(app)
    assert client.post("/collections/c/search", json={"query": "red", "k": 3}).status_code == 200
    col = app.state.collections["c"].current()
    assert col.dense_cache_bytes == 0 and all(c._bytes == 0 for c in col._dense_cache.values())
    assert create_app({"c": str(folder)}).state.collections["c"].current().dense_cache_bytes == 128 * 2**20


def test_the_server_sets_inverted_indexes_to_search_approximately(tiny_data, fake_encoders, tmp_path, caplog,
                                                                   monkeypatch):
    """serve --approximate reaches every inverted index large enough for it (here every size: the
    threshold is lowered), says so on the collection's page, and says when a collection has none; the
    search itself is tested against the exact one in tests/test_index_conformance.py."""
    from retrieval import Collection
    from retrieval.api import Approximate
    from retrieval.indexes import bounded

    monkeypatch.setattr(bounded, "MIN_ITEMS", 0)  # so the tiny collection has the bounded search's rows
    # k = 4 of 16 anchors: a row squared (16) reaches the anchors, as the bounded search's rows need (bounded.pays)
    inv = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "inv", index="inverted",
                           **dict(FAKE, k=4))
    assert Collection.open(inv).manifest["indexes"]["image_relative"]["bounds"] is True
    app = create_app({"c": str(inv)}, approximate={"terms": 8, "head": 0.1, "candidates": 64})
    assert TestClient(app).post("/collections/c/search", json={"query": "red", "k": 3}).status_code == 200
    col = app.state.collections["c"].current()
    assert {m: s.index.approximate for m, s in col.sides.items()} == {m: Approximate(8, 0.1, 64) for m in col.sides}
    said = TestClient(app).get("/collections/c").json()["approximate"]  # answers are not taken for exact ones
    assert said["image"] == {"terms": 8, "head": 0.1, "candidates": 64}
    assert set(said) == {m for m, side in col.sides.items() if side.index.bounds is not None}
    assert col.search_approximately(None) == [] and col.sides["image"].index.approximate is None
    assert "approximate" not in col.info()
    exact = create_app({"c": str(inv)}).state.collections["c"].current()
    assert all(s.index.approximate is None for s in exact.sides.values()) and "approximate" not in exact.info()
    with pytest.raises(Exception, match="expected approximate settings among terms, head and candidates, got"):
        create_app({"c": str(inv)}, approximate={"rows": 3})
    plain = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "plain", **FAKE)
    create_app({"p": str(plain)}, approximate=True)  # an exact index: said, and served exactly
    assert "p has no inverted index of 20,000 items or more" in caplog.text and "stay exact" in caplog.text
    monkeypatch.setattr(bounded, "MIN_ITEMS", 20_000)  # at its real size, the tiny inverted collection is too small
    small = create_app({"c": str(inv)}, approximate=True).state.collections["c"].current()
    assert small.search_approximately(True) == [] and "approximate" not in small.info()


def test_a_query_given_up_before_its_batch_is_not_answered():
    release, seen = threading.Event(), []

    def run(key, payloads):
        release.wait(5)
        seen.extend(payloads)
        return payloads

    b = MicroBatcher(run, max_batch=1, max_wait_s=0.001, idle_exit_s=0.2)
    first = b.submit_future("k", 1)
    deadline = time.monotonic() + 5
    while not b.batches and time.monotonic() < deadline:  # the worker holds query 1
        time.sleep(0.01)
    gone, kept = b.submit_future("k", 2), b.submit_future("k", 3)
    assert gone.cancel()  # its client timed out while it waited
    release.set()
    assert first.result(5) == 1 and kept.result(5) == 3 and seen == [1, 3]


def test_a_text_query_asked_again_is_not_encoded_again(folder):
    from retrieval.serve.querycache import QueryCache

    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts])

    cache = QueryCache(max_entries=2)
    np.testing.assert_array_equal(cache.encode("c1", "text", ["ab", "abc", "ab"], encode), [[2, 1], [3, 1], [2, 1]])
    np.testing.assert_array_equal(cache.encode("c1", "text", ["abc", "x"], encode), [[3, 1], [1, 1]])
    assert calls == [["ab", "abc"], ["x"]] and (cache.hits, cache.misses) == (2, 3)
    cache.encode("c2", "text", ["x"], encode)  # another collection version: its own entry
    assert calls[-1] == ["x"] and len(cache._rows) == 2  # the oldest went
    # through the server: the same answers with the cache, and the hits counted
    cold = TestClient(create_app({"c": str(folder)}, query_cache=0))
    warm = TestClient(create_app({"c": str(folder)}))
    for client in (cold, warm, warm):
        got = [client.post("/collections/c/search", json={"query": q, "k": 4}).json() for q in QUERIES]
        same(got, [cold.post("/collections/c/search", json={"query": q, "k": 4}).json() for q in QUERIES])
    text = warm.get("/metrics").text
    assert f'retrieval_query_cache_total{{result="hit"}} {float(len(QUERIES))}' in text
    assert f'retrieval_query_cache_total{{result="miss"}} {float(len(QUERIES))}' in text


def test_a_query_alone_does_not_wait_for_company():
    def run(key, payloads):
        time.sleep(0.05)  # while one batch runs, the next gathers
        return payloads

    b = MicroBatcher(run, max_batch=8, max_wait_s=0.5, idle_exit_s=2)
    for i in range(3):  # one client: each query answered without the half second's wait
        t = time.monotonic()
        assert b.submit("k", i) == i and time.monotonic() - t < 0.4
    with ThreadPoolExecutor(8) as pool:  # company: the batches that follow wait for each other
        assert list(pool.map(lambda i: b.submit("k", i), range(8))) == list(range(8))
    assert list(b.batches)[:3] == [1, 1, 1] and max(b.batches) > 1 and b._company


def test_a_backlog_is_taken_at_once_and_a_lone_query_after_company_waits():
    """After a batch with company, the next first query waits ``max_wait_s`` for others only when it
    came alone; queries already queued (they arrived while the worker was busy) go at once."""
    import queue
    from concurrent.futures import Future

    b = MicroBatcher(lambda key, payloads: payloads, max_batch=8, max_wait_s=0.3)
    b._company = True
    for i in range(3):
        b._queue.put(("k", i, Future()))
    t = time.monotonic()
    assert [p for _, p, _ in b._take()] == [0, 1, 2] and time.monotonic() - t < 0.2
    b._queue.put(("k", 3, Future()))
    t = time.monotonic()
    assert [p for _, p, _ in b._take()] == [3] and time.monotonic() - t >= 0.29  # alone after company: waited
    assert not b._company
    with pytest.raises(queue.Empty):
        b._queue.get_nowait()
