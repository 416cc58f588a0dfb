"""Distributed build and sharded search on a real local Ray cluster (loopback only).

Skipped when Ray is not installed (it is an optional extra; scripts/setup.sh installs it so that
these run in CI). Checked: a sharded build equals a one-process build item for item; a sharded
search equals the unsharded search, in process and through Ray actors; a build killed half-way
resumes with nothing lost and nothing duplicated; settings never mix between runs.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.errors import InputError
from tests.conftest import flat

from .conftest import COLOURS, solid
from .ray_fakes import register_fakes

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
# a sharded build does not self-anchor (docs/cli.md): the one-process builds it must equal do not either
FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", k=3, p=2.0, cache_dir="", self_anchors=False)
QUERIES = ["a red square", "a blue square", "green box", "orange", "black box", "a grey thing"]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module: 2 CPUs, bound to 127.0.0.1, workers see this repository;
    Ray's usage statistics (an upload to the internet) off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             object_store_memory=200 * 2**20, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def corpus(tiny_data, tmp_path):
    """17 rows: 16 squares (8 colours x 2 sizes, half captioned) and one undecodable file in the middle."""
    rows = []
    (tmp_path / "corpus2").mkdir()
    for i, c in enumerate(COLOURS):
        for size in (24, 30):
            rows.append({"image": solid(tmp_path / "corpus2" / f"{c}-{size}.png", c, size=size),
                         "caption": f"{c} box" if size == 24 else None, "label": c})
        if i == 3:
            bad = tmp_path / "corpus2" / "broken.png"
            bad.write_bytes(b"not a png")
            rows.append({"image": str(bad), "caption": "broken", "label": None})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "corpus.parquet")
    return str(tmp_path / "corpus.parquet")


def sharded(corpus, anchors, out, **kw):
    from retrieval.distributed import build_sharded

    kw = {**FAKE, "worker_setup": register_fakes, **kw}
    return build_sharded(corpus, anchors, out, show_progress_bar=False, **kw)


def shard_items(folder: Path):
    """(ids, paths, embeddings, relative vectors as dense rows) over all shards, in shard order."""
    from retrieval.store.arrow import sparse_from_columns

    m = json.loads((folder / "manifest.json").read_text())
    ids, paths, vecs, rel = [], [], [], []
    for s in m["shards"]:
        t = pq.read_table(folder / s["name"] / "items.parquet")
        ids += t.column("id").to_pylist()
        paths += t.column("path").to_pylist()
        vecs.append(np.load(folder / s["name"] / "image_vectors.npy"))
        rel.append(sparse_from_columns(t.column("rel_indices"), t.column("rel_values"), 8).toarray())
    return np.array(ids), paths, np.vstack(vecs), np.vstack(rel)


def test_sharded_build_equals_one_process_build(cluster, tiny_data, corpus, fake_encoders, tmp_path):
    one = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "one", **FAKE))
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=5, workers=2)
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "retrieval-sharded-collection" and m["counts"] == {"items": 16, "shards": 4, "skipped": 1}
    assert [s["items"] for s in m["shards"]] == [5, 5, 5, 1] and m["skipped"][0]["path"].endswith("broken.png")
    assert not (tmp_path / "many.partial").exists()
    ids, paths, vecs, rel = shard_items(out)
    assert ids.tolist() == one.item_ids.tolist() and paths == one.items["path"]  # same ids, same order
    np.testing.assert_allclose(vecs, np.asarray(one.sides["image"].abs), atol=1e-6)
    from retrieval.store.arrow import sparse_from_columns

    t = pq.read_table(one.folder / "items.parquet")
    np.testing.assert_allclose(rel, sparse_from_columns(t.column("rel_indices"), t.column("rel_values"), 8).toarray(),
                               atol=1e-6)


def test_views_and_their_style_normaliser_shard_like_a_one_process_build(cluster, tiny_data, corpus, fake_encoders,
                                                                        tmp_path):
    from .test_style import _two_style_anchors

    anchors = _two_style_anchors(tmp_path)
    kw = {k: v for k, v in FAKE.items() if k not in ("k", "p")}  # the views defaults, in both builds
    one = Collection.open(build_collection(corpus, anchors, tmp_path / "one", **kw))
    out = sharded(corpus, anchors, tmp_path / "many", shard_size=6, workers=2, k=None, p=None)
    m = json.loads((out / "manifest.json").read_text())
    assert m["style"]["method"] == "wccn" and m["anchors"] == {k: v for k, v in one.manifest["anchors"].items() if k != "modalities"}
    assert m["anchors"]["count"] == 8 and m["anchors"]["views"] == 16
    assert flat(m) == flat(one.manifest)
    _, _, vecs, rel = shard_items(out)
    from retrieval.store.arrow import sparse_from_columns

    t = pq.read_table(one.folder / "items.parquet")
    np.testing.assert_allclose(rel, sparse_from_columns(t.column("rel_indices"), t.column("rel_values"), 8).toarray(),
                               atol=1e-5)
    many = Collection.open(out)
    for q in QUERIES:
        assert [h.id for h in one.search(q, k=5, captions=False)] == [h.id for h in many.search(q, k=5)], q


@pytest.mark.parametrize("actors", [None, 2])
def test_sharded_search_equals_unsharded_search(cluster, tiny_data, corpus, fake_encoders, tmp_path, actors):
    from retrieval.api import ShardedCollection

    one = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "one", index="inverted", **FAKE))
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=3, workers=2, index="inverted")
    many = ShardedCollection.open(out, actors=actors)
    assert isinstance(Collection.open(out), ShardedCollection)  # the one facade opens both kinds
    for q in QUERIES:
        for route in (None, "translation"):
            # sharded collections have no caption match (yet): the same search without it
            a, b = one.search(q, k=7, route=route, captions=False), many.search(q, k=7, route=route)
            assert [(h.id, h.path) for h in a] == [(h.id, h.path) for h in b], (q, route)
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
    img = tiny_data["anchor_images"][2]
    assert [h.id for h in one.search(img, k=5)] == [h.id for h in many.search(img, k=5)]
    assert many.item_path(15) == one.item_path(15)
    where = "label IN ('red', 'blue', 'green') AND id != 3"  # applied in every shard before its top k
    for q in QUERIES:
        a, b = one.search(q, k=4, where=where, captions=False), many.search(q, k=4, where=where)
        assert [h.id for h in a] == [h.id for h in b] and len(a) == 4 and all(h.label in ("red", "blue", "green")
                                                                          for h in b)
    with pytest.raises(InputError, match="target 'items'"):
        many.search("red", target="text")
    with pytest.raises(InputError, match="fusion"):
        many.search("red", route="fusion")


def test_cli_searches_a_sharded_collection(cluster, tiny_data, corpus, fake_encoders, tmp_path, capsys):
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=4, workers=1)
    assert main(["search", str(out), "a red square", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits and "red" in json.dumps(hits)
    assert main(["info", str(out)]) == 0
    assert "shards       4 (up to 4 items each)" in capsys.readouterr().out


@pytest.mark.parametrize("actors", [None, ""])
def test_server_serves_a_sharded_collection(cluster, tiny_data, corpus, fake_encoders, tmp_path, actors):
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    one = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "one", **FAKE))
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=6, workers=1)
    client = TestClient(create_app({"many": str(out)}, shard_actors=actors))
    r = client.post("/collections/many/search", json={"query": "a blue square", "k": 5})
    assert r.status_code == 200, r.text
    got = r.json()["results"]
    assert [h["id"] for h in got] == [h.id for h in one.search("a blue square", k=5, captions=False)]
    f = client.get(got[0]["url"])
    assert f.status_code == 200 and f.content[:4] == b"\x89PNG"


def test_a_killed_build_resumes_without_losing_or_duplicating(cluster, tiny_data, corpus, fake_encoders, tmp_path):
    out, work = tmp_path / "many", tmp_path / "many.partial"
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r});\n"
              "from tests.ray_fakes import register_fakes\n"
              "from retrieval.distributed import build_sharded\n"
              f"build_sharded({corpus!r}, {tiny_data['anchors']!r}, {str(out)!r}, address={cluster!r}, shard_size=2,"
              f" workers=1, batch_size=1, image_encoder='fake-image', text_encoder='fake-text', k=3, p=2.0,"
              f" cache_dir='', worker_setup=register_fakes, show_progress_bar=False,"
              f" ray_init={{'runtime_env': {{'env_vars': {{'PYTHONPATH': {str(ROOT)!r},"
              f" 'RETRIEVAL_TEST_ENCODE_DELAY': '0.4'}}}}}})\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list(work.glob("shard-*"))) >= 2:
            break
        time.sleep(0.2)
    written = sorted(p.name for p in work.glob("shard-*"))
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # still running: kill it half-way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 2 <= len(written) < 8 and not out.exists()
    before = {n: (work / n / "manifest.json").stat().st_mtime_ns for n in written}

    # a different setting never mixes with the partial build
    with pytest.raises(InputError, match="other ones"):
        sharded(corpus, tiny_data["anchors"], out, shard_size=2, workers=1, k=2)
    sharded(corpus, tiny_data["anchors"], out, shard_size=2, workers=2)  # resume
    for n, t in before.items():  # shards from before the kill were kept, not rebuilt
        assert (out / n / "manifest.json").stat().st_mtime_ns == t
    ids, _, _, _ = shard_items(out)
    one = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "one", **FAKE))
    assert ids.tolist() == one.item_ids.tolist()  # nothing lost, nothing twice
    many = Collection.open(out)
    for q in QUERIES:
        assert [h.id for h in one.search(q, k=6, captions=False)] == [h.id for h in many.search(q, k=6)]


def test_a_killed_worker_is_replaced_and_the_build_completes(cluster, tiny_data, corpus, fake_encoders, tmp_path):
    import functools
    import threading

    out, result = tmp_path / "many", {}

    def build():
        try:
            result["out"] = sharded(corpus, tiny_data["anchors"], out, shard_size=4, workers=2, batch_size=1,
                                    worker_setup=functools.partial(register_fakes, delay=0.3))
        except BaseException as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    t = threading.Thread(target=build)
    t.start()
    killed, deadline = None, time.time() + 120
    while killed is None and time.time() < deadline and t.is_alive():
        res = subprocess.run(["pgrep", "-f", "MapBatches\\(_Encode\\)"], capture_output=True, text=True)
        pids = [int(x) for x in res.stdout.split()]
        if pids and list((tmp_path / "many.partial").glob("shard-*")):
            os.kill(pids[0], signal.SIGKILL)  # an encoding actor dies after the first shard is written
            killed = pids[0]
        time.sleep(0.1)
    t.join(300)
    assert killed is not None, f"no encoding actor was found to kill ({result})"
    assert "error" not in result, result.get("error")
    ids, _, _, _ = shard_items(out)
    one = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "one", **FAKE))
    assert ids.tolist() == one.item_ids.tolist()


def test_restart_discards_a_partial_build_of_other_settings(cluster, tiny_data, corpus, fake_encoders, tmp_path):
    work = tmp_path / "many.partial"
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"run": "something else"}))
    with pytest.raises(InputError, match="restart"):
        sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=8)
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=8, restart=True)
    assert json.loads((out / "manifest.json").read_text())["counts"]["shards"] == 2


def test_sharded_collections_refuse_what_they_cannot_do(cluster, tiny_data, corpus, fake_encoders, tmp_path,
                                                        capsys):
    out = sharded(corpus, tiny_data["anchors"], tmp_path / "many", shard_size=8, workers=1)
    before = sorted(p.name for p in out.rglob("*"))
    assert main(["add", str(out), "--corpus", corpus]) == 2
    assert "not updated in place" in capsys.readouterr().err
    assert main(["delete", str(out), "3"]) == 2
    assert "not updated in place" in capsys.readouterr().err
    (tmp_path / "labels.txt").write_text("red\nblue\n")
    assert main(["classify", str(out), "--labels", str(tmp_path / "labels.txt")]) == 2
    assert "expected files to classify" in capsys.readouterr().err
    with pytest.raises(InputError, match="expected files to classify"):
        Collection.open(out).classify(None, ["red", "blue"])
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing was touched


def test_without_ray_nothing_imports_it(tmp_path, capsys):
    code = ("import sys, retrieval, retrieval.cli, retrieval.api, retrieval.serve.server, retrieval.distributed\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert main(["build", "--corpus", "x", "--anchors", "y", "--out", str(tmp_path / "z"), "--shard-size", "4"]) == 2
    assert "only with --ray" in capsys.readouterr().err
