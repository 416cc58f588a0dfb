"""Nothing lost, nothing surprising (2): what a new and a hostile user found by hand (issue 30), each
reproduced here as they ran it. A served collection's file cut short, and a burst of simultaneous
requests, are tried on a real server over loopback (a subprocess, so that a crash cannot take the
tests down with it), bounded in count and time."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.errors import CollectionDamagedError
from retrieval.store.arrow import sha256_file
from retrieval.store.format import MANIFEST, manifest_checksum, write_manifest

from .test_safety import FAKE, FAKE_ARGS, cli  # the first round's helpers

ROOT = Path(__file__).resolve().parents[1]


def rewrite_checksums(folder: Path) -> None:
    """What a hostile or careless hand does after damaging a file: make the manifest agree with it."""
    m = json.loads((folder / MANIFEST).read_text())
    for name in m["files"]:
        m["files"][name] = {"sha256": sha256_file(str(folder / name)), "bytes": (folder / name).stat().st_size}
    write_manifest(folder / MANIFEST, m)


# ---- 1. --overwrite trusts only a manifest that verifies, and deletes nothing it did not write ------

def test_overwrite_refuses_a_copied_manifest(tiny_collection, tiny_data, fake_encoders, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "important.txt").write_text("keep me")
    shutil.copy(Path(tiny_collection) / MANIFEST, folder / MANIFEST)  # none of its files beside it
    code, _, err = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                       "--out", folder, "--overwrite", *FAKE_ARGS)
    assert code == 2 and "nothing was deleted" in err and "missing" in err, err
    assert (folder / "important.txt").read_text() == "keep me"


def test_overwrite_and_add_never_delete_a_users_file(tiny_collection, tiny_data, fake_encoders, capsys):
    notes = Path(tiny_collection) / "notes.txt"
    notes.write_text("my notes")
    code, _, err = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                       "--out", tiny_collection, "--overwrite", *FAKE_ARGS)
    assert code == 2 and "'notes.txt'" in err and "nothing was deleted" in err, err
    code, _, err = cli(capsys, "add", tiny_collection, "--corpus", tiny_data["corpus"], "--allow-duplicates",
                       "--no-progress")
    assert code == 2 and "'notes.txt'" in err, err
    assert notes.read_text() == "my notes"
    notes.unlink()  # with the user's file moved out, the collection is replaced as before
    code, _, _ = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                     "--out", tiny_collection, "--overwrite", *FAKE_ARGS)
    assert code == 0


# ---- 4. damage with rewritten checksums: exit 2 and what is wrong, never a traceback ---------------

def _truncate(f: Path):
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _empty(f: Path):
    f.write_bytes(b"")


def _objects(f: Path):
    np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _nan(f: Path):
    x = np.load(f)
    x[3, 5] = np.nan
    np.save(f, x)


def _manifest(change):
    def edit(folder: Path):
        m = json.loads((folder / MANIFEST).read_text())
        change(m)
        m["manifest_sha256"] = manifest_checksum(m)
        (folder / MANIFEST).write_text(json.dumps(m))
    return edit


def _faiss(m):
    m["indexes"]["image_relative"] = {"backend": "faiss", "files": []}


DAMAGE = {
    "truncated npy": ("image_vectors.npy", _truncate),
    "empty npy": ("image_vectors.npy", _empty),
    "object npy": ("text_vectors.npy", _objects),
    "NaN vectors": ("image_vectors.npy", _nan),
    "truncated parquet": ("items.parquet", _truncate),
    "no encoders": (None, _manifest(lambda m: m.pop("encoders"))),
    "wrong dim": (None, _manifest(lambda m: m["encoders"]["image"].update(dim=25))),
    "dim as text": (None, _manifest(lambda m: m["encoders"]["text"].update(dim="32"))),
    "backend faiss": (None, _manifest(_faiss)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_with_rewritten_checksums_is_refused_by_name(damage, tiny_collection, fake_encoders, capsys):
    folder = Path(tiny_collection)
    name, how = DAMAGE[damage]
    how(folder / name if name else folder)
    if name:
        rewrite_checksums(folder)
    for argv in (("search", folder, "a red square"), ("info", folder), ("info", folder, "--no-verify")):
        if damage == "NaN vectors" and "--no-verify" in argv:
            continue  # NaN is found by verifying the values, which --no-verify skips
        code, out, err = cli(capsys, *argv)
        assert code == 2 and err.startswith("error: expected") and "Traceback" not in err, (argv, code, out, err)
        assert "rebuild" in err, err


# ---- 2. a memory-mapped file cut short under a served collection ------------------------------------

def test_a_file_cut_short_under_an_open_collection_raises(tiny_collection, fake_encoders):
    col = Collection.open(tiny_collection)
    assert col.search("a red square", k=2)
    os.truncate(Path(tiny_collection) / "image_vectors.npy", 0)
    with pytest.raises(CollectionDamagedError, match="cut or overwritten in place"):
        col.search("a red square", k=2)
    with pytest.raises(CollectionDamagedError):
        col.classify(None, ["red", "blue"])


def test_a_file_replaced_by_rename_is_not_damage(tiny_collection, fake_encoders):
    col = Collection.open(tiny_collection)
    f = Path(tiny_collection) / "image_vectors.npy"
    tmp = f.with_name("x.tmp")
    tmp.write_bytes(b"")
    os.replace(tmp, f)  # another inode: the mapped one keeps its data
    assert len(col.search("a red square", k=2)) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = """
import sys
from tests.ray_fakes import register_fakes
register_fakes()
from retrieval.serve.server import serve
serve(sys.argv[2:], port=int(sys.argv[1]), reload_s=0.2)
"""


@pytest.fixture
def served(tiny_data, fake_encoders, tmp_path):
    """A real `retrieval serve` process (fake encoders) over two collections, on a free loopback port."""
    folders = [build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / name, **FAKE)
               for name in ("one", "two")]
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), *map(str, folders)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if request(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the server did not start: " + proc.communicate()[0][-2000:])
    yield port, folders, proc
    proc.kill()
    proc.wait(10)


def request(port, method, path, body=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.getheader("Retry-After"), resp.read()
    finally:
        conn.close()


def test_truncating_a_served_file_answers_503_for_that_collection_only(served):
    port, (one, two), proc = served
    ask = {"query": "a red square", "k": 2}
    assert request(port, "POST", "/collections/one/search", ask)[0] == 200
    os.truncate(Path(one) / "image_vectors.npy", 0)
    for _ in range(3):
        status, ctype, _, body = request(port, "POST", "/collections/one/search", ask)
        assert status == 503 and "application/json" in ctype and b"cut or overwritten" in body, (status, body)
        assert request(port, "POST", "/collections/two/search", ask)[0] == 200
    health = json.loads(request(port, "GET", "/health")[3])
    assert health["status"] == "degraded" and list(health["damaged"]) == ["one"]
    assert proc.poll() is None  # alive
    # a build written over it atomically (as retrieval writes) is reopened, and answers again
    os.truncate(Path(one) / "image_vectors.npy", 0)
    deadline = time.time() + 20
    shutil.rmtree(one)
    shutil.copytree(two, one)
    while time.time() < deadline and request(port, "POST", "/collections/one/search", ask)[0] != 200:
        time.sleep(0.3)
    assert request(port, "POST", "/collections/one/search", ask)[0] == 200


# ---- 3. a burst of simultaneous requests meets the queue, in JSON, never a plain-text refusal -------

def test_a_burst_of_200_simultaneous_requests(served):
    port = served[0]
    n, results, start = 200, [], threading.Barrier(200, timeout=30)

    def one(i):
        start.wait()
        try:
            results.append(request(port, "POST", "/collections/one/search", {"query": f"a red square {i}", "k": 3},
                                   timeout=60))
        except OSError as exc:  # a dropped connection is a failure of this test, recorded as such
            results.append((None, "", None, repr(exc).encode()))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(results) == n
    statuses = [r[0] for r in results]
    assert all(s in (200, 503) for s in statuses), [r for r in results if r[0] not in (200, 503)][:3]
    busy = [r for r in results if r[0] == 503]
    assert all("application/json" in r[1] and r[2] for r in busy)  # JSON with Retry-After
    assert statuses.count(200) == n  # 200 < the queue (256) and the connection limit (512): all answered


def test_past_the_connection_limit_a_request_gets_json_503_with_retry_after(tiny_collection, fake_encoders):
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    app = create_app({"c": str(tiny_collection)}, limits={"max_connections": 0})
    with TestClient(app) as client:
        r = client.post("/collections/c/search", json={"query": "a red square"})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "in flight" in r.json()["error"]


# ---- 5. --where on a CSV corpus compares numbers --------------------------------------------------

def test_where_on_a_csv_corpus_types_its_columns(tiny_data, fake_encoders, tmp_path, capsys):
    corpus = tmp_path / "corpus.csv"
    rows = ["image,caption,year,code,score,ok,day"]
    for i, c in enumerate(tiny_data["colours"]):
        rows.append(f"corpus/{c}.png,{c} box from {1990 + 5 * i},{1990 + 5 * i},00{i},{i / 2},"
                    f"{'true' if i % 2 else 'false'},2020-01-{10 + i}")
    corpus.write_text("\n".join(rows) + "\n")
    out = tmp_path / "csvcol"
    code, _, err = cli(capsys, "build", "--corpus", corpus, "--anchors", tiny_data["anchors"], "--out", out, *FAKE_ARGS)
    assert code == 0, err
    col = Collection.open(out)
    types = dict(col.filter_columns())
    assert types["year"] == "int64" and types["code"] == "string" and types["score"] == "double"
    assert types["ok"] == "bool" and types["day"] == "date32[day]" and types["caption"] == "string"
    hits = col.search("a red square", k=8, where="year >= 2010")
    assert sorted(h.caption for h in hits) == sorted(f"{c} box from {1990 + 5 * i}"
                                                     for i, c in enumerate(tiny_data["colours"]) if 1990 + 5 * i >= 2010)
    code, _, err = cli(capsys, "search", out, "a red square", "--where", "year >= 'abc'")
    assert code == 2 and "expected a number" in err
    assert len(col.search("x", k=8, where="code = '003'")) == 1  # codes keep their zeros


# ---- 7. rough edges of the first hour --------------------------------------------------------------

@pytest.fixture
def app_client(tiny_collection, fake_encoders):
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    with TestClient(create_app({"c": str(tiny_collection)}), raise_server_exceptions=False) as client:
        yield client


def test_the_api_docs_page_needs_no_network(app_client):
    page = app_client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    scripts = [s.split('"')[0] for s in page.text.split('src="')[1:]] + \
              [s.split('"')[0] for s in page.text.split('href="')[1:] if s.split('"')[0].endswith(".css")]
    assert scripts and all(app_client.get(s).status_code == 200 for s in scripts), scripts


def test_the_api_says_no_server_paths(app_client, tiny_collection):
    info = app_client.get("/collections/c").json()
    assert str(tiny_collection) not in json.dumps(info) and str(Path(tiny_collection).parent) not in json.dumps(info)
    hits = app_client.post("/collections/c/search", json={"query": "a red square", "k": 2}).json()["results"]
    assert all(h["file"].endswith(".png") and "path" not in h for h in hits)


def test_an_unreadable_sound_upload_names_the_upload(tone_data, fake_encoders, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from retrieval.media.audio import load_audio
    from retrieval.serve.server import create_app
    from tests.conftest import FakeAudioEncoder

    inner = FakeAudioEncoder._encode_batch
    monkeypatch.setattr(FakeAudioEncoder, "_encode_batch",
                        lambda self, batch: ([load_audio(p, None) for p in batch], inner(self, batch))[1])
    col = build_collection(tone_data["corpus"], tone_data["anchors"], tmp_path / "tones", audio_encoder="fake-audio",
                           text_encoder="fake-text", cache_dir="", k=3, p=2.0)
    with TestClient(create_app({"tones": str(col)}), raise_server_exceptions=False) as client:
        r = client.post("/collections/tones/search/file", files={"file": ("mine.wav", b"RIFF not a sound", "audio/wav")})
    err = r.json()["error"]
    assert r.status_code == 400 and "'mine.wav'" in err, err
    assert "/tmp" not in err and not err.rstrip().endswith(":") and "Error: " in err


def test_blank_text_and_impossible_routes_are_refused_before_a_model_loads(tiny_collection, fake_encoders, capsys):
    fake_encoders.clear()  # the ones the build loaded
    for argv in (("search", tiny_collection, ""), ("search", tiny_collection, "   "),
                 ("search", tiny_collection, "a red square", "--route", "absolute")):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and ("expected a text query" in err or "possible: ['relative'" in err), (argv, err)
        assert not fake_encoders, argv  # no encoder was even loaded


def test_search_output_says_what_a_score_is(tiny_collection, fake_encoders, capsys):
    code, out, _ = cli(capsys, "search", tiny_collection, "a red square", "-k", "2")
    assert code == 0 and "score: similarity" in out and "can pass 1" in out
    code, out, _ = cli(capsys, "search", tiny_collection, "a red square", "-k", "2", "--json")
    assert "score: similarity" not in out  # machine output stays JSON alone


def test_file_names_are_printed_escaped(tiny_data, fake_encoders, tmp_path, capsys):
    corpus = tmp_path / "odd"
    corpus.mkdir()
    shutil.copy(tiny_data["corpus_images"][0], corpus / "two\nlines.png")
    shutil.copy(tiny_data["corpus_images"][1], corpus / "\x1b[31mred.png")
    col = build_collection(str(corpus), tiny_data["anchors"], tmp_path / "col", **FAKE)
    code, out, _ = cli(capsys, "search", col, "a red square", "-k", "2", "--target", "items")
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred.png" in out and "two\\nlines.png" in out
    assert len(out.splitlines()) == 1 + 1 + 1 + 2  # the score note, heading, column names, 2 results


def test_classify_keeps_the_end_of_long_paths(tiny_collection, tiny_data, fake_encoders, tmp_path, capsys):
    deep = tmp_path / ("a-long-folder-name-" * 4)
    deep.mkdir()
    files = [shutil.copy(tiny_data["corpus_images"][i], deep / f"pic{i}.png") for i in range(2)]
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    code, out, _ = cli(capsys, "classify", tiny_collection, "--labels", labels, *files, "-k", "1", "--no-progress")
    lines = out.splitlines()
    assert code == 0 and "pic0.png" in lines[0] and "pic1.png" in lines[1]


def test_image_to_text_lists_each_text_once(tiny_data, fake_encoders, tmp_path):
    # corpus captions that are also anchor captions, word for word
    for c in tiny_data["colours"]:
        (tiny_data["root"] / "corpus" / f"{c}.txt").write_text(f"a {c} square")
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", **FAKE))
    hits = col.search(tiny_data["corpus_images"][0], target="text", k=10)
    texts = [h.caption for h in hits]
    assert len(texts) == len(set(texts)) == len(tiny_data["colours"])  # 16 texts, 8 distinct
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert hits[0].caption == "a red square" and hits[0].source == "corpus" and hits[0].path is not None


def test_a_caption_column_by_another_name_is_said(tiny_data, fake_encoders, tmp_path, caplog):
    table = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"image": tiny_data["corpus_images"],
                             "title": [f"{c} box" for c in tiny_data["colours"]]}), table)
    with caplog.at_level("WARNING"):
        col = Collection.open(build_collection(str(table), tiny_data["anchors"], tmp_path / "col", **FAKE))
    assert "took the column 'title'" in caplog.text and col.items["caption"][0] == "red box"


def test_a_build_on_few_anchors_warns_with_the_figure(tiny_data, fake_encoders, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", **dict(FAKE, k=2))
    assert "only 8 anchor pairs" in caplog.text and "results/anchors" in caplog.text


def test_the_demo_says_a_command_that_runs(monkeypatch, tmp_path):
    from retrieval.cli.demo import invocation

    script = tmp_path / "venv" / "bin" / "retrieval"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert invocation() == os.path.join("venv", "bin", "retrieval")  # not on PATH: its path
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert invocation() == "retrieval"  # an activated venv
