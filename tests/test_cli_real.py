"""The CLI end to end on real data: a small emoji subset (Noto anchors, Twemoji corpus) and the
packaged encoders. (The full demo is run by tests/test_readme.py, as the README writes it.)"""

import json
import os
import re
import subprocess
import sys

import pytest

from retrieval.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emoji_subset(tmp_path_factory):
    from retrieval.datasets import emoji

    root = tmp_path_factory.mktemp("emoji")
    paths = emoji.prepare(root / "data", limit=120, names=["red apple", "dog face", "rocket"], show_progress_bar=False)
    out = root / "col"
    assert main(["build", "--corpus", paths["corpus"], "--anchors", paths["anchors"], "--out", str(out),
                 "-k", "32", "--cache-dir", str(root / "cache"), "--no-progress"]) == 0
    return {"out": str(out), "root": root, **paths}


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info(emoji_subset, capsys):
    code, out, _ = run(capsys, "info", emoji_subset["out"])
    assert code == 0 and "efficientnet-lite0-multi (1472-d)" in out and "minilm (384-d)" in out and "k=32" in out
    assert "whitened (lambda 9)" in out
    code, out, _ = run(capsys, "info", emoji_subset["out"], "--json")
    info = json.loads(out)
    assert info["counts"]["items"] == info["counts"]["anchors"] >= 100
    # build.DEFAULT_IMAGE_P and DEFAULT_WHITEN: a single-view image anchor set
    assert info["projector"] == {"kind": "asif", "k": 32, "p": 2.0, "center": True, "whiten": 9.0}
    assert info["labels"]["count"] == 1000 and info["labels"]["weight"] == 0.6  # the label bridge, single view


def test_text_search_table_and_json(emoji_subset, capsys):
    code, out, _ = run(capsys, "search", emoji_subset["out"], "an emoji of a red apple", "-k", "5")
    assert code == 0 and "text -> image" in out and "rank" in out
    code, out, _ = run(capsys, "search", emoji_subset["out"], "an emoji of a red apple", "-k", "5", "--json")
    obj = json.loads(out)
    hits = obj["results"]["image"]
    assert obj["query"] == "an emoji of a red apple" and len(hits) == 5
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0]["score"] >= hits[-1]["score"]
    assert "an emoji of red apple" in [h["caption"] for h in hits]  # the Twemoji apple, via Noto anchors only


def test_queries_file_prints_json_lines(emoji_subset, capsys, tmp_path):
    qfile = tmp_path / "q.txt"
    qfile.write_text("an emoji of a red apple\n\nan emoji of a dog face\nan emoji of a rocket\n")
    code, out, _ = run(capsys, "search", emoji_subset["out"], "--queries", str(qfile), "-k", "3")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [x["query"] for x in lines] == ["an emoji of a red apple", "an emoji of a dog face",
                                                          "an emoji of a rocket"]
    assert all(len(x["results"]["image"]) == 3 for x in lines)
    # one process answering many queries gives what single searches give
    code, single, _ = run(capsys, "search", emoji_subset["out"], "an emoji of a dog face", "-k", "3", "--json")
    assert [h["id"] for h in json.loads(single)["results"]["image"]] == [h["id"] for h in lines[1]["results"]["image"]]


def test_image_query_returns_images_and_texts(emoji_subset, capsys):
    import pyarrow.parquet as pq

    anchors = pq.read_table(emoji_subset["anchors"]).to_pylist()
    apple = next(r for r in anchors if r["concept"] == "red apple")
    query = os.path.join(os.path.dirname(emoji_subset["anchors"]), apple["image"])  # the Noto apple
    code, out, _ = run(capsys, "search", emoji_subset["out"], "--image", query, "-k", "5", "--json")
    res = json.loads(out)["results"]
    assert code == 0 and set(res) == {"image", "text"}
    assert "an emoji of red apple" in [h["caption"] for h in res["image"]]  # image -> image, across styles
    assert any("apple" in h["caption"] for h in res["text"])               # image -> text


def test_explain_and_forced_routes(emoji_subset, capsys):
    code, out, _ = run(capsys, "explain", emoji_subset["out"], "an emoji of a red apple")
    assert code == 0 and "route relative" in out and "<- chosen" in out and "translation" in out
    code, out, _ = run(capsys, "explain", emoji_subset["out"], "--image", "x.png", "--json")
    plans = [json.loads(line) for line in out.splitlines()]
    assert [(p["target"], p["route"]) for p in plans] == [("image", "absolute"), ("text", "relative")]
    for route in ("translation", "fusion"):
        code, out, _ = run(capsys, "search", emoji_subset["out"], "an emoji of a red apple", "-k", "5",
                           "--route", route, "--json")
        assert code == 0 and len(json.loads(out)["results"]["image"]) == 5
    code, _, err = run(capsys, "search", emoji_subset["out"], "apple", "--route", "absolute")
    assert code == 2 and "route 'absolute' is impossible" in err


def test_classify_own_items_and_given_images(emoji_subset, capsys):
    code, out, _ = run(capsys, "classify", emoji_subset["out"], "--labels", emoji_subset["labels"], "-k", "3",
                       "--json", "--template", "an emoji of {}")
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]["summary"]
    assert code == 0 and summary["items_with_label"] >= 100
    assert summary["top1"] > summary["chance_top1"]  # real signal on real data, not a fixed number
    img = lines[0]["path"]
    # stored items: no logits kept, so no WordNet tree; the collection's other items vote
    assert lines[0]["signals"] == ["asif", "neighbours"]
    code, out, err = run(capsys, "classify", emoji_subset["out"], img, "--labels", emoji_subset["labels"])
    assert code == 0 and img[-40:] in out  # a long path keeps its end, where the file name is
    # a file comes with logits: the WordNet tree too, where it reaches a label (SIGNAL_WEIGHTS), centred
    # on the collection's items with their labels weighing alike
    assert re.search(r"signals: asif( \+ tree)? \+ neighbours.*; inputs centred on the corpus \(\d+ items, its labels "
                     r"weighing alike\)", err)


@pytest.mark.parametrize("argv,match", [
    (["search", "{out}"], "exactly one of"),
    (["search", "{out}", "x", "--image", "nope.png"], "exactly one of"),
    (["search", "{out}", "--image", "{root}/missing.png"], "does not exist"),
    (["search", "{root}/no-such-collection", "apple"], "does not exist"),
    (["search", "{out}", "apple", "-k", "0"], "k >= 1"),
    (["classify", "{out}", "--labels", "{root}/missing.txt"], "no such file, and no comma"),
    (["build", "--corpus", "{root}/none", "--anchors", "{anchors}", "--out", "{root}/x"], "does not exist"),
    (["build", "--corpus", "{corpus}", "--anchors", "{anchors}", "--out", "{out}"], "exists"),
    (["build", "--corpus", "{corpus}", "--anchors", "{anchors}", "--out", "{root}/y", "-k", "100000"], "k <= number of anchors"),
    (["build", "--corpus", "{corpus}", "--anchors", "{anchors}", "--out", "{root}/z", "--text-encoder", "clip"], "unknown encoder 'clip'"),
])
def test_bad_input_exits_2_with_a_clear_message(emoji_subset, capsys, argv, match):
    argv = [a.format(**{k: str(v) for k, v in emoji_subset.items()}) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and match in err
    assert not any(p.name.startswith((".x", ".y", ".z")) for p in emoji_subset["root"].iterdir())


def test_console_script_exit_status(emoji_subset):
    proc = subprocess.run([sys.executable, "-m", "retrieval", "info", str(emoji_subset["root"])],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr
