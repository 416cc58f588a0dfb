"""The captions worth asking for (retrieval/build/captioning.py): suggest picks uncaptioned items by
coverage, most useful first; captions given afterwards make the collection a fresh build of the
captioned corpus would make, encoding only those captions; bad tables change nothing."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from retrieval import Collection, build_collection
from retrieval.api import apply_captions, suggest, write_todo
from retrieval.cli.main import main
from retrieval.core.selection import coverage_select
from retrieval.errors import InputError
from tests.test_reanchor import same_collections

FAKE = dict(image_encoder="fake-labelled-image", text_encoder="fake-text", k=3, p=2.0)
LATER = ("red", "green", "blue", "yellow")  # the items whose captions come after the build


def _uncaptioned_build(tiny_data, tmp_path, cache):
    for c in LATER:
        (tiny_data["root"] / "corpus" / f"{c}.txt").unlink()
    return build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "later", cache_dir=cache, **FAKE)


def _table(tiny_data, path, key="path", captions=None):
    captions = captions or {c: f"{c} box" for c in LATER}
    keys = [str(tiny_data["root"] / "corpus" / f"{c}.png") for c in captions]
    pcsv.write_csv(pa.table({key: keys, "caption": list(captions.values())}), path)
    return str(path)


def test_captions_given_later_make_the_collection_a_build_with_them_makes(tiny_data, fake_encoders, tmp_path):
    cache = str(tmp_path / "cache")
    full = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "full",
                                            cache_dir=cache, **FAKE))
    later = _uncaptioned_build(tiny_data, tmp_path, cache)
    before = Collection.open(later).manifest["anchors"]["self"]["count"]
    fake_encoders.clear()
    # k and p as the builds were given them (not given, they follow the anchors, as in reanchor)
    got = apply_captions(later, _table(tiny_data, tmp_path / "todo.csv"), cache_dir=cache, k=3, p=2.0)
    assert sorted(fake_encoders) == ["fake-text"]  # the captions only: no picture was encoded
    assert (got["new"], got["replaced"], got["unchanged"], got["blank"], got["captioned"]) == (4, 0, 0, 0, 8)
    col = Collection.open(later)
    same_collections(col, full)
    assert before == 4 and col.manifest["anchors"]["self"]["count"] == 8
    assert col.manifest["captions_given"]["new"] == 4
    np.testing.assert_array_equal(col.item_ids, full.item_ids)


def test_captions_by_id_replace_old_ones_and_blank_rows_are_skipped(tiny_data, fake_encoders, tmp_path):
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", cache_dir="",
                                           **FAKE))
    row = {p.rsplit("/", 1)[-1]: i for i, p in zip(col.item_ids, col.items["path"])}
    path = tmp_path / "ids.parquet"
    pa.parquet.write_table(pa.table({"id": [row["red.png"], row["green.png"], row["blue.png"]],
                                     "caption": ["zork quux", "green box", "  "]}), path)
    got = apply_captions(col.folder, path, cache_dir="")
    assert (got["new"], got["replaced"], got["unchanged"], got["blank"]) == (0, 1, 1, 1)
    again = Collection.open(col.folder)
    assert dict(zip(again.items["path"], again.items["caption"]))[str(tiny_data["root"] / "corpus" / "red.png")] \
        == "zork quux"
    hit = again.search("zork quux", k=1)[0]
    assert hit.path.endswith("red.png") and hit.matched == "caption"


def test_bad_caption_tables_change_nothing(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", cache_dir="", **FAKE)
    manifest = (out / "manifest.json").read_text()
    red = str(tiny_data["root"] / "corpus" / "red.png")
    cases = {"unknown": (pa.table({"path": ["nowhere.png"], "caption": ["x"]}), "got 1 unknown"),
             "twice": (pa.table({"path": [red, red], "caption": ["x", "y"]}), "twice"),
             "blank": (pa.table({"path": [red], "caption": [" "]}), "at least one filled caption"),
             "no caption": (pa.table({"path": [red], "words": ["x"]}), "expected a caption column"),
             "no key": (pa.table({"file": [red], "caption": ["x"]}), "item \\(id or path\\) column"),
             "bad id": (pa.table({"id": ["seven"], "caption": ["x"]}), "whole-number item ids")}
    for name, (table, match) in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.csv"
        pcsv.write_csv(table, path)
        with pytest.raises(InputError, match=match):
            apply_captions(out, path, cache_dir="")
        assert (out / "manifest.json").read_text() == manifest, name


def test_coverage_starts_from_what_is_covered_and_returns_the_best_first():
    rng = np.random.default_rng(0)
    centres = np.eye(4, dtype=np.float32) * 5
    x = np.vstack([c + rng.normal(size=(10, 4)).astype(np.float32) * 0.1 for c in centres])
    picks = coverage_select(x, x, 4)
    assert sorted(set(p // 10 for p in picks)) == [0, 1, 2, 3]  # one per cluster
    covered = x[[0, 10, 20]]  # clusters 0, 1 and 2 have a captioned item
    assert coverage_select(x, x, 1, covered=covered)[0] // 10 == 3  # the one cluster left first
    pool = x[30:]
    assert coverage_select(pool, x, 1, covered=covered)[0] == coverage_select(x, x, 1, covered=covered)[0] - 30


def test_suggest_lists_uncaptioned_items_and_the_cli_loop_fills_them(tiny_data, fake_encoders, tmp_path, capsys):
    later = _uncaptioned_build(tiny_data, tmp_path, str(tmp_path / "cache"))
    rows = suggest(later, 10)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]  # only four have no caption
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == sorted(f"{c}.png" for c in LATER)
    assert main(["suggest", str(later), "-n", "2", "--out", str(tmp_path / "todo.csv")]) == 0
    assert "fill in its caption column" in capsys.readouterr().out
    todo = pcsv.read_csv(tmp_path / "todo.csv", convert_options=pcsv.ConvertOptions(
        column_types={"caption": pa.string()})).to_pylist()
    assert [r["id"] for r in todo] == [r["id"] for r in rows[:2]] and all(not r["caption"] for r in todo)
    colour = {r["id"]: r["path"].rsplit("/", 1)[-1][:-4] for r in rows}
    filled = pa.table({"id": [r["id"] for r in todo], "path": [r["path"] for r in todo],
                       "caption": [f"{colour[r['id']]} box" for r in todo]})
    pcsv.write_csv(filled, tmp_path / "todo.csv")
    assert main(["caption", str(later), str(tmp_path / "todo.csv"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 new, 0 replaced" in out and "6 of 8 items now have a caption" in out and "No item was encoded" in out
    assert len(suggest(later, 10)) == 2  # the two left
    assert main(["suggest", str(later), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2


def test_suggest_refuses_what_it_cannot_do(tiny_data, fake_encoders, tmp_path):
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", cache_dir="", **FAKE)
    with pytest.raises(InputError, match="all have one"):
        suggest(out, 5)
    with pytest.raises(InputError, match="number of suggestions >= 1"):
        suggest(out, 0)
    with pytest.raises(InputError, match=".csv or .parquet"):
        write_todo([], tmp_path / "todo.txt")
    assert main(["suggest", str(out)]) == 2


def _app(tiny_data, tmp_path, allowed):
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    later = _uncaptioned_build(tiny_data, tmp_path, str(tmp_path / "cache"))
    return TestClient(create_app({"later": str(later)}, captions=allowed, reload_s=0), raise_server_exceptions=False)


def test_the_server_suggests_always_and_writes_captions_only_when_allowed(tiny_data, fake_encoders, tmp_path):
    pytest.importorskip("fastapi")
    with _app(tiny_data, tmp_path, allowed=False) as c:
        r = c.get("/collections/later/suggest", params={"n": 3})
        assert r.status_code == 200 and not r.json()["editable"] and len(r.json()["items"]) == 3
        first = r.json()["items"][0]
        assert c.get(first["url"]).status_code == 200 and "/" not in first["file"]  # no server path given out
        r = c.post("/collections/later/captions", json={"captions": [{"id": first["id"], "caption": "zork quux"}]})
        assert r.status_code == 403 and "--allow-captions" in r.json()["error"]
        assert c.get("/collections/nope/suggest").status_code == 404
        assert c.get("/collections/later/suggest", params={"n": 0}).status_code == 422


def test_captions_given_through_the_server_are_searched_at_once(tiny_data, fake_encoders, tmp_path):
    pytest.importorskip("fastapi")
    with _app(tiny_data, tmp_path, allowed=True) as c:
        first = c.get("/collections/later/suggest", params={"n": 2}).json()["items"][0]
        r = c.post("/collections/later/captions", json={"captions": [{"id": first["id"], "caption": "zork quux"}]})
        assert r.status_code == 200, r.text
        assert (r.json()["new"], r.json()["captioned"]) == (1, 5) and "path" not in r.json()
        hit = c.post("/collections/later/search", json={"query": "zork quux", "k": 1}).json()["results"][0]
        assert (hit["id"], hit["matched"]) == (first["id"], "caption")  # the new version, without a restart
        bad = c.post("/collections/later/captions", json={"captions": [{"id": 999, "caption": "x"}]})
        assert bad.status_code == 409 and "unknown" in bad.json()["error"]
        assert c.post("/collections/later/captions", json={"captions": []}).status_code == 422
        blank = c.post("/collections/later/captions", json={"captions": [{"id": first["id"], "caption": " "}]})
        assert blank.status_code == 422
