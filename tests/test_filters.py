"""Metadata filters (search --where): the expression language is safe and says what is wrong; a
corpus table's other columns are stored and kept by add and reanchor; every route and backend
returns the brute-force answer over the matching items, k of them whenever k match; the CLI exits 2
and the server answers 422 on a bad filter."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.store.filters import FilterError, evaluate

from .conftest import COLOURS, solid

LAB = dict(image_encoder="fake-labelled-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
QUERIES = ["a red square", "a green box", "something blue", "yellow", "a black and grey thing"]


@pytest.fixture
def meta_corpus(tiny_data):
    """Three sizes of every colour's square, with a year, a price, a flag and a shop (some null)."""
    root = tiny_data["root"] / "meta"
    root.mkdir()
    rows = []
    for i, c in enumerate(COLOURS):
        for j, size in enumerate((20, 26, 34)):
            rows.append({"image": solid(root / f"{c}-{size}.png", c, size=size), "caption": f"{c} box",
                         "year": 2018 + (i + j) % 5, "price": float(i * 3 + j) / 2, "sale": (i + j) % 2 == 0,
                         "shop": None if (i + j) % 4 == 3 else ("north" if j else "south")})
    pq.write_table(pa.Table.from_pylist(rows), tiny_data["root"] / "meta.parquet")
    return str(tiny_data["root"] / "meta.parquet"), rows


def test_the_language():
    t = pa.table({"label": ["cat", "dog", None, "cat"], "year": [2019, 2021, 2022, None],
                  "ok": [True, False, True, None], "name": ["it's", "b", "c", "d"]})
    cases = {"label = 'cat' AND year >= 2020": [0, 0, 0, 0], "label = 'cat' OR year > 2021": [1, 0, 1, 1],
             "NOT (label = 'cat')": [0, 1, 0, 0], "year IN (2019, 2022)": [1, 0, 1, 0],
             "label IS NULL": [0, 0, 1, 0], "label is not null": [1, 1, 0, 1], "label LIKE 'c%'": [1, 0, 0, 1],
             "label NOT LIKE 'c%'": [0, 1, 0, 0], "ok = TRUE": [1, 0, 1, 0], "year <> 2019": [0, 1, 1, 0],
             "name = 'it''s'": [1, 0, 0, 0], '"year" >= 2021.5': [0, 0, 1, 0], "label NOT IN ('cat')": [0, 1, 0, 0]}
    for expr, want in cases.items():
        assert evaluate(expr, t).astype(int).tolist() == want, expr
    bad = {"year = '2020'": "expected a number to compare with column 'year' \\(int64\\)",
           "colour = 'red'": "got 'colour' at character 1; columns: label \\(string\\), year \\(int64\\)",
           "label =": "expected a value", "label = 'cat' AND": "expected a column name",
           "(label = 'cat'": "expected '\\)'", "label = 'x'; DROP TABLE t": "cannot read '; DROP",
           "year LIKE '2%'": "expected a string column for LIKE", "": "expected a filter such as",
           "__import__('os').system('x')": "cannot read \".system", "open('f')": "expected a comparison", "ok = 1": "expected TRUE or FALSE",
           "x" * 3000: "at most 2000 characters"}
    for expr, match in bad.items():
        with pytest.raises(FilterError, match=match):
            evaluate(expr, t)


def brute(col, query, where, k):
    """The relative route by brute force over the rows the filter keeps."""
    from retrieval.core.ranking import rank_candidates

    allowed = np.flatnonzero(evaluate(where, col.sides[col.modality].meta))
    q = col.encoder("text").encode([query])
    pi, pt = col.projectors[col.modality], col.projectors["text"]
    items = np.asarray(col.sides[col.modality].abs)
    scores = np.asarray((pi.transform(items[allowed]) @ pt.transform_rows(q).T).todense(), np.float64).ravel()
    qd = pt.dense(q, np.float64)[0]
    ids, _, _ = rank_candidates(allowed, scores, k, lambda c: pi.dense(items[c], np.float64) @ qd)
    return [int(col.item_ids[i]) for i in ids]


@pytest.mark.parametrize("index", ["exact", "inverted:float32", "faiss", "torch"])  # float16: the conformance tests
def test_every_backend_and_route_filters_before_the_cut(meta_corpus, tiny_data, fake_encoders, tmp_path, index):
    corpus, rows = meta_corpus
    col = Collection.open(build_collection(corpus, tiny_data["anchors"], tmp_path / "c", index=index, **LAB))
    assert [n for n, _ in col.filter_columns()] == ["id", "path", "caption", "label", "sha256", "year", "price",
                                                     "sale", "shop"]
    for where in ("year >= 2020", "shop = 'north' AND sale = TRUE", "price < 3", "shop IS NULL"):
        keep = {r["image"] for r in rows if eval_row(r, where)}
        for q in QUERIES:
            hits = col.search(q, k=5, route="relative", where=where, captions=False)  # the route alone
            assert {h.path for h in hits} <= keep and len(hits) == min(5, len(keep))
            assert [h.id for h in hits] == brute(col, q, where, 5)
            hybrid = col.search(q, k=5, route="relative", where=where)  # captions matched within the filter too
            assert {h.path for h in hybrid} <= keep and len(hybrid) == min(5, len(keep))
            for route in ("relative+labels", "translation", "fusion"):
                got = col.search(q, k=5, route=route, where=where)
                assert {h.path for h in got} <= keep and len(got) == min(5, len(keep)), route
        img = col.search(tiny_data["anchor_images"][0], k=4, where=where)  # image -> image, the absolute route
        assert {h.path for h in img} <= keep and len(img) == min(4, len(keep))
    assert col.search("a red square", k=5, where="year > 3000") == []


def eval_row(r, where):
    """The test's own reading of the four filters used above."""
    return {"year >= 2020": r["year"] >= 2020, "shop = 'north' AND sale = TRUE": r["shop"] == "north" and r["sale"],
            "price < 3": r["price"] < 3, "shop IS NULL": r["shop"] is None}[where]


def test_metadata_survives_add_and_reanchor(meta_corpus, tiny_data, fake_encoders, tmp_path):
    from retrieval.api import reanchor

    corpus, rows = meta_corpus
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", **LAB))
    col = col.add(corpus)  # the folder corpus had no metadata; the new rows do: the old ones get nulls
    assert len(col.search("a red square", k=50, where="year IS NULL")) == len(COLOURS)
    assert len(col.search("a red square", k=50, where="year >= 2018")) == len(rows)
    again = Collection.open(reanchor(col.folder, tiny_data["anchors"], tmp_path / "r", cache_dir="", k=3, p=2.0))
    assert [h.id for h in again.search("blue", k=6, where="sale = FALSE")] == \
        [h.id for h in col.search("blue", k=6, where="sale = FALSE")]
    bad = tiny_data["root"] / "bad.parquet"
    pq.write_table(pa.table({"image": [rows[0]["image"]], "year": ["last year"]}), bad)
    with pytest.raises(Exception, match="metadata columns to have the collection's types"):
        col.add(str(bad), duplicates="allow")
    clash = tiny_data["root"] / "clash.parquet"
    pq.write_table(pa.table({"image": [rows[0]["image"]], "id": [7]}), clash)
    with pytest.raises(Exception, match="rename them"):
        build_collection(str(clash), tiny_data["anchors"], tmp_path / "x", **LAB)


def test_cli_and_server_refuse_a_bad_filter(meta_corpus, tiny_data, fake_encoders, tmp_path, capsys):
    corpus, _ = meta_corpus
    out = build_collection(corpus, tiny_data["anchors"], tmp_path / "c", **LAB)
    assert main(["search", str(out), "a red square", "--where", "year >= 2021", "--json"]) == 0
    assert '"results"' in capsys.readouterr().out
    assert main(["search", str(out), "a red square", "--where", "colour = 'red'"]) == 2
    err = capsys.readouterr().err
    assert "got 'colour'" in err and "year (int64)" in err and "shop (string)" in err
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    client = TestClient(create_app({"c": str(out)}))
    ok = client.post("/collections/c/search", json={"query": "a red square", "k": 3, "where": "sale = TRUE"})
    assert ok.status_code == 200 and len(ok.json()["results"]) == 3
    bad = client.post("/collections/c/search", json={"query": "a red square", "where": "year = 'x'"})
    assert bad.status_code == 422 and "expected a number to compare with column 'year'" in bad.json()["error"]
