"""Vectors in: a side whose embeddings were made elsewhere (vectors:NAME), built from tables."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.build.self_anchors import given_count
from retrieval.encoders import load_encoder
from retrieval.errors import InputError

KW = dict(k=3, p=2.0, background="none", labels=False)


def tables(tiny_data, tmp_path, *, text=False, spoil=None):
    """The tiny corpus and anchors as tables of the fake encoders' vectors (and captions); ``spoil``
    changes the corpus vectors first."""
    img, txt = load_encoder("fake-image", "image"), load_encoder("fake-text", "text")
    anchors = pq.read_table(tiny_data["anchors"]).to_pydict()
    caps = anchors["caption"]
    a = {"caption": caps, "image_embedding": img.encode(tiny_data["anchor_images"]).tolist()}
    if text:
        a["text_embedding"] = txt.encode(caps).tolist()
    corpus_caps = [open(p[:-4] + ".txt").read().strip() for p in tiny_data["corpus_images"]]
    vecs = img.encode(tiny_data["corpus_images"])
    if spoil is not None:
        vecs = spoil(vecs.astype(np.float64))
    c = {"path": [p.rsplit("/", 1)[-1] for p in tiny_data["corpus_images"]], "caption": corpus_caps,
         "embedding": [list(v) for v in vecs]}
    if text:
        c["text_embedding"] = txt.encode(corpus_caps).tolist()
    pq.write_table(pa.table(a), tmp_path / "a.parquet")
    pq.write_table(pa.table(c), tmp_path / "c.parquet")
    return str(tmp_path / "c.parquet"), str(tmp_path / "a.parquet")


def answers(col, queries, modality="text"):
    """Each query's hits as (file name, score): the two builds number their items in their own orders."""
    return [[(h.path.rsplit("/", 1)[-1], round(h.score, 5)) for h in hits]
            for hits in col.search_many(queries, modality=modality, k=4)]


def by_name(col):
    names = [p.rsplit("/", 1)[-1] for p in col.items["path"]]
    return np.asarray(col.sides[col.modality].abs)[np.argsort(names)]


def names(col, hits_lists):
    return [[h.path.rsplit("/", 1)[-1] for h in hits] for hits in hits_lists]


@pytest.mark.parametrize("index", ["exact", "inverted", "inverted:float32", "faiss", "faiss:HNSW8", "torch"])
def test_a_build_from_vectors_answers_as_the_build_from_the_files(tiny_data, fake_encoders, tmp_path, index):
    files = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "files",
                                             image_encoder="fake-image", text_encoder="fake-text",
                                             cache_dir="", index=index, **KW))
    corpus, anchors = tables(tiny_data, tmp_path)
    vecs = Collection.open(build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:fake-colours",
                                            text_encoder="fake-text", cache_dir="", index=index, **KW))
    assert vecs.manifest["encoders"]["image"] == {"spec": "vectors:fake-colours", "dim": 24}
    np.testing.assert_allclose(by_name(vecs), by_name(files), atol=1e-6)
    queries = [f"a {c} thing" for c in tiny_data["colours"]]
    assert answers(vecs, queries) == answers(files, queries)
    img = load_encoder("fake-image", "image").encode(tiny_data["corpus_images"][:3])
    assert (names(vecs, vecs.search_vectors(img, modality="image", k=3))
            == names(files, files.search_vectors(img, modality="image", k=3)))
    with pytest.raises(InputError, match="vector-file"):
        vecs.search(tiny_data["corpus_images"][0], k=2)


def test_both_sides_as_vectors(tiny_data, fake_encoders, tmp_path):
    files = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "files",
                                             image_encoder="fake-image", text_encoder="fake-text",
                                             cache_dir="", **KW))
    corpus, anchors = tables(tiny_data, tmp_path, text=True)
    vecs = Collection.open(build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                                            text_encoder="vectors:words", cache_dir="", **KW))
    q = load_encoder("fake-text", "text").encode([f"a {c} thing" for c in tiny_data["colours"]])
    assert names(vecs, vecs.search_vectors(q, modality="text", k=3)) == names(files, files.search_vectors(q, modality="text", k=3))


def test_the_model_a_side_is_named_after_encodes_its_queries_without_stitching(tiny_data, fake_encoders, tmp_path,
                                                                                capsys):
    from retrieval.cli.main import main

    corpus, anchors = tables(tiny_data, tmp_path, text=True)
    built = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:fake-image",
                             text_encoder="vectors:fake-text", cache_dir="", **KW)
    plain = Collection.open(built)
    named = Collection.open(built, image_encoder="fake-image", text_encoder="fake-text")
    assert not named.stitched  # the same space: no map through the anchors
    texts = [f"a {c} thing" for c in tiny_data["colours"]]
    q = load_encoder("fake-text", "text").encode(texts)
    assert names(named, named.search_many(texts, k=3)) == names(plain, plain.search_vectors(q, modality="text", k=3))
    pics = tiny_data["corpus_images"][:3]
    img = load_encoder("fake-image", "image").encode(pics)
    assert (names(named, named.search_many(pics, modality="image", k=3))
            == names(plain, plain.search_vectors(img, modality="image", k=3)))
    assert named.plan("text").route == plain.plan("text").route
    with pytest.raises(InputError, match="--text-encoder fake-text"):
        plain.search("a red thing")
    assert main(["search", str(built), "a red thing", "--text-encoder", "fake-text", "-k", "2", "--json"]) == 0
    assert '"rank": 1' in capsys.readouterr().out


def test_a_model_of_another_width_is_not_the_side_it_is_named_after(tiny_data, fake_encoders, tmp_path):
    narrow = load_encoder("fake-image", "image")
    narrow.dim = 12  # named as the side, another width: not what made the vectors
    corpus, anchors = tables(tiny_data, tmp_path)
    built = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:fake-image",
                             text_encoder="fake-text", cache_dir="", **KW)
    with pytest.raises(InputError, match=r"made this collection's 'vectors:fake-image' vectors \(width 24\), got "
                                         r"the image encoder 'fake-image' of width 12"):
        Collection.open(built, image_encoder=narrow)


def test_reencode_moves_a_collection_from_vectors_to_the_model_and_refuses_the_other_way(tiny_data, fake_encoders,
                                                                                         tmp_path):
    from retrieval.build.reencode import reencode

    img = load_encoder("fake-image", "image")
    pairs = dict(pq.read_table(tiny_data["anchors"]).to_pydict(), image=tiny_data["anchor_images"],
                 image_embedding=img.encode(tiny_data["anchor_images"]).tolist())
    pq.write_table(pa.table(pairs), tmp_path / "a.parquet")
    items = {"path": tiny_data["corpus_images"], "embedding": img.encode(tiny_data["corpus_images"]).tolist(),
             "caption": [open(p[:-4] + ".txt").read().strip() for p in tiny_data["corpus_images"]]}
    pq.write_table(pa.table(items), tmp_path / "c.parquet")  # files named by path: they can be encoded again
    built = build_collection(str(tmp_path / "c.parquet"), str(tmp_path / "a.parquet"), tmp_path / "vecs",
                             image_encoder="vectors:colours", text_encoder="fake-text", cache_dir="", **KW)
    files = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "files",
                                             image_encoder="fake-image", text_encoder="fake-text", cache_dir="", **KW))
    moved = Collection.open(reencode(built, tmp_path / "moved", image_encoder="fake-image", cache_dir=""))
    assert moved.manifest["encoders"]["image"]["spec"] == "fake-image"
    queries = [f"a {c} thing" for c in tiny_data["colours"]]
    assert answers(moved, queries) == answers(files, queries)
    with pytest.raises(InputError, match="expected a model to reencode with, got 'vectors:x'"):
        reencode(files.folder, tmp_path / "back", image_encoder="vectors:x", cache_dir="")
    assert not (tmp_path / "back").exists() and not (tmp_path / ".files.reencode").exists()


@pytest.mark.parametrize("spoil, match", [
    (lambda v: np.where(np.arange(len(v))[:, None] == 2, np.nan, v), r"NaN or infinite values in row\(s\) \[2\]"),
    (lambda v: np.where(np.arange(len(v))[:, None] == 1, 0.0, v), r"only zeros .* row\(s\) \[1\]"),
])
def test_bad_vectors_are_refused_by_row_and_nothing_is_written(tiny_data, fake_encoders, tmp_path, spoil, match):
    corpus, anchors = tables(tiny_data, tmp_path, spoil=spoil)
    with pytest.raises(InputError, match=match):
        build_collection(corpus, anchors, tmp_path / "out", image_encoder="vectors:x", text_encoder="fake-text",
                         cache_dir="", **KW)
    assert not (tmp_path / "out").exists()


def test_vectors_in_npy_files_beside_a_csv_and_in_arrow_ipc_tables(tiny_data, fake_encoders, tmp_path):
    import pyarrow.csv as pcsv
    import pyarrow.feather as feather

    corpus, anchors = tables(tiny_data, tmp_path)
    kw = dict(image_encoder="vectors:colours", text_encoder="fake-text", cache_dir="", **KW)
    ref = Collection.open(build_collection(corpus, anchors, tmp_path / "ref", **kw))
    t = pq.read_table(corpus)
    pcsv.write_csv(t.drop(["embedding"]), tmp_path / "items.csv")
    np.save(tmp_path / "items.embedding.npy", np.asarray(t.column("embedding").to_pylist(), np.float32))
    feather.write_feather(pq.read_table(anchors), tmp_path / "pairs.arrow")
    col = Collection.open(build_collection(str(tmp_path / "items.csv"), str(tmp_path / "pairs.arrow"),
                                           tmp_path / "csv", **kw))
    queries = [f"a {c} thing" for c in tiny_data["colours"]]
    assert answers(col, queries) == answers(ref, queries)
    np.save(tmp_path / "items.embedding.npy", np.ones((3, 24), np.float32))
    with pytest.raises(InputError, match=r"8 rows of numbers .* shape \(3, 24\)"):
        build_collection(str(tmp_path / "items.csv"), anchors, tmp_path / "short", **kw)
    np.save(tmp_path / "items.embedding.npy", np.array([{"a": 1}] * 8, dtype=object))
    with pytest.raises(InputError, match="NumPy array of vectors"):  # loaded without unpickling
        build_collection(str(tmp_path / "items.csv"), anchors, tmp_path / "pickled", **kw)
    assert not (tmp_path / "short").exists() and not (tmp_path / "pickled").exists()


def test_a_row_of_another_width_is_refused_by_row(tiny_data, fake_encoders, tmp_path):
    corpus, anchors = tables(tiny_data, tmp_path)
    t = pq.read_table(corpus).to_pydict()
    t["embedding"][3] = t["embedding"][3][:5]
    pq.write_table(pa.table(t), corpus)
    with pytest.raises(InputError, match=r"row\(s\) \[3\]"):
        build_collection(corpus, anchors, tmp_path / "out", image_encoder="vectors:x", text_encoder="fake-text",
                         cache_dir="", **KW)


def test_files_for_a_vectors_side_and_vectors_for_a_model_are_refused(tiny_data, fake_encoders, tmp_path):
    corpus, anchors = tables(tiny_data, tmp_path)
    with pytest.raises(InputError, match="vectors:NAME"):
        build_collection(corpus, anchors, tmp_path / "o1", image_encoder="fake-image", text_encoder="fake-text",
                         cache_dir="", **KW)
    with pytest.raises(InputError, match="image vector in every row"):
        build_collection(tiny_data["corpus"], anchors, tmp_path / "o2", image_encoder="vectors:x",
                         text_encoder="fake-text", cache_dir="", **KW)
    with pytest.raises(InputError, match="background bank"):
        build_collection(corpus, anchors, tmp_path / "o3", image_encoder="vectors:x", text_encoder="fake-text",
                         cache_dir="", **dict(KW, background=tiny_data["anchors"]))
    assert not any((tmp_path / f"o{i}").exists() for i in (1, 2, 3))


def test_cli_searches_with_a_vector_file(tiny_data, fake_encoders, tmp_path, capsys):
    import json

    from retrieval.cli.main import main

    corpus, anchors = tables(tiny_data, tmp_path)
    col = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                           text_encoder="fake-text", cache_dir="", **KW)
    q = load_encoder("fake-image", "image").encode(tiny_data["corpus_images"][:2])
    np.save(tmp_path / "q.npy", q)
    capsys.readouterr()
    assert main(["search", str(col), "--vector-file", str(tmp_path / "q.npy"), "-k", "1", "--json",
                 "--target", "items"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["results"]["image"][0]["path"].rsplit("/", 1)[-1] for r in lines] == [
        p.rsplit("/", 1)[-1] for p in tiny_data["corpus_images"][:2]]
    np.save(tmp_path / "bad.npy", q[:, :5])
    assert main(["search", str(col), "--vector-file", str(tmp_path / "bad.npy")]) != 0
    assert "width 24" in capsys.readouterr().err
    assert main(["info", str(col)]) == 0 and "vectors:colours" in capsys.readouterr().out
    assert main(["explain", str(col), "a red thing"]) == 0


def test_add_takes_vectors_and_answers_as_a_fresh_build(tiny_data, fake_encoders, tmp_path):
    from retrieval.build.update import add_items

    corpus, anchors = tables(tiny_data, tmp_path)
    t = pq.read_table(corpus)
    pq.write_table(t.slice(0, 5), tmp_path / "first.parquet")
    pq.write_table(t.slice(5), tmp_path / "rest.parquet")
    # add never makes anchors of the new items' captions, where a fresh build would (test_self_anchors.py)
    kw = dict(image_encoder="vectors:colours", text_encoder="fake-text", cache_dir="", self_anchors=False, **KW)
    whole = Collection.open(build_collection(corpus, anchors, tmp_path / "whole", **kw))
    part = build_collection(str(tmp_path / "first.parquet"), anchors, tmp_path / "part", **kw)
    assert add_items(part, str(tmp_path / "rest.parquet"))["added"] == 3
    grown = Collection.open(part)
    queries = [f"a {c} thing" for c in tiny_data["colours"]]
    assert answers(grown, queries) == answers(whole, queries)
    with pytest.raises(InputError, match="already"):
        add_items(part, str(tmp_path / "rest.parquet"))


def test_reanchor_takes_an_anchor_table_of_vectors(tiny_data, fake_encoders, tmp_path):
    from retrieval.build.reanchor import reanchor

    corpus, anchors = tables(tiny_data, tmp_path)
    kw = dict(image_encoder="vectors:colours", text_encoder="fake-text", cache_dir="", **KW)
    pq.write_table(pq.read_table(anchors).slice(0, 6), tmp_path / "fewer.parquet")
    fresh = Collection.open(build_collection(corpus, str(tmp_path / "fewer.parquet"), tmp_path / "fresh", **kw))
    col = build_collection(corpus, anchors, tmp_path / "col", **kw)
    moved = Collection.open(reanchor(col, str(tmp_path / "fewer.parquet"), cache_dir="", k=3, p=2.0, labels=False,
                                     background="none"))
    assert given_count(moved.manifest["anchors"]) == 6 and moved.manifest["anchors"]["self"]["kept"]
    queries = [f"a {c} thing" for c in tiny_data["colours"]]
    assert answers(moved, queries) == answers(fresh, queries)


def test_http_searches_a_vectors_collection_by_vector_and_by_text(tiny_data, fake_encoders, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    corpus, anchors = tables(tiny_data, tmp_path)
    col = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                           text_encoder="fake-text", cache_dir="", **KW)
    q = load_encoder("fake-image", "image").encode(tiny_data["corpus_images"][:1])[0].tolist()
    with TestClient(create_app({"vecs": str(col)}), raise_server_exceptions=False) as c:
        r = c.post("/collections/vecs/search", json={"vector": q, "modality": "image", "k": 1})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["file"] == tiny_data["corpus_images"][0].rsplit("/", 1)[-1]
        r = c.post("/collections/vecs/search", json={"query": f"a {tiny_data['colours'][0]} thing", "k": 2})
        assert r.status_code == 200 and len(r.json()["results"]) == 2
        r = c.post("/collections/vecs/search", json={"vector": q[:5], "modality": "image"})
        assert r.status_code == 422
        r = c.post("/collections/vecs/search", json={"vector": [0.0] * len(q), "modality": "image"})
        assert r.status_code == 400 and "not all zeros" in r.json()["error"]  # no direction to search along


def test_vectors_are_checked_in_chunks_with_the_same_result_and_every_bad_row_named():
    from retrieval.encoders.vectors import check_vectors

    x = np.random.default_rng(0).standard_normal((10, 4)) * 1e3
    np.testing.assert_array_equal(check_vectors(x, chunk=3), check_vectors(x))
    np.testing.assert_array_equal(check_vectors(list(x), chunk=4), check_vectors(x))
    x[1, 2], x[7, 0] = np.nan, np.inf
    with pytest.raises(InputError, match=r"NaN or infinite values in row\(s\) \[1, 7\]"):
        check_vectors(x, chunk=3)


def test_a_column_of_vectors_is_read_as_one_array_unless_its_rows_differ():
    from retrieval.media.tables import column_vectors

    fixed = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    got = column_vectors(pa.chunked_array([fixed, fixed]))
    assert isinstance(got, np.ndarray) and got.shape == (4, 3) and got[3].tolist() == [3.0, 4.0, 5.0]
    assert column_vectors(pa.array([[1.0, 2.0], [3.0]])) == [[1.0, 2.0], [3.0]]  # named row by row later
    assert column_vectors(pa.array([[1.0, 2.0], None])) == [[1.0, 2.0], None]


def test_classify_vectors_answers_as_classifying_the_files(tiny_data, fake_encoders, tmp_path, capsys):
    import json

    from retrieval.cli.main import main

    files = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "files",
                                             image_encoder="fake-image", text_encoder="fake-text", cache_dir="", **KW))
    corpus, anchors = tables(tiny_data, tmp_path)
    col = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                           text_encoder="fake-text", cache_dir="", **KW)
    vecs = Collection.open(col)
    labels = [f"{c} thing" for c in tiny_data["colours"]]
    images = tiny_data["corpus_images"][:4]
    q = load_encoder("fake-image", "image").encode(images)
    want, got = files.classify(images, labels, k=3), vecs.classify_vectors(q, labels, k=3)
    assert got.signals == want.signals
    for g, w in zip(got, want):
        assert g.labels == w.labels
        np.testing.assert_allclose(g.probabilities, w.probabilities, atol=1e-6)
    assert vecs.classify_vectors(q, labels, k=3, abstain=1.0)[0].abstained
    for bad, match in ((q[:, :5], "width 24"), (np.zeros_like(q), "not all zeros, got 4 such row"),
                       (np.full_like(q, np.nan), "finite"), (q[:0], "at least one")):
        with pytest.raises(Exception, match=match):
            vecs.classify_vectors(bad, labels)
    np.save(tmp_path / "q.npy", q)
    capsys.readouterr()
    assert main(["classify", str(col), "--vector-file", str(tmp_path / "q.npy"), "--labels", ",".join(labels),
                 "-k", "2", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["path"] for r in lines] == [f"{tmp_path / 'q.npy'}[{i}]" for i in range(4)]
    assert [r["labels"] for r in lines] == [p.labels[:2] for p in want]
    assert main(["classify", str(col), images[0], "--vector-file", str(tmp_path / "q.npy"), "--labels",
                 ",".join(labels)]) == 2
    assert "not both" in capsys.readouterr().err


def test_http_classifies_a_vector(tiny_data, fake_encoders, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    corpus, anchors = tables(tiny_data, tmp_path)
    col = build_collection(corpus, anchors, tmp_path / "vecs", image_encoder="vectors:colours",
                           text_encoder="fake-text", cache_dir="", **KW)
    q = load_encoder("fake-image", "image").encode(tiny_data["corpus_images"][:1])
    labels = [f"{c} thing" for c in tiny_data["colours"]]
    want = Collection.open(col).classify_vectors(q, labels, k=2)[0]
    with TestClient(create_app({"vecs": str(col)}), raise_server_exceptions=False) as c:
        r = c.post("/collections/vecs/classify/vector", json={"vector": q[0].tolist(), "labels": labels, "k": 2})
        assert r.status_code == 200, r.text
        assert r.json()["labels"] == want.labels and r.json()["signals"] == ["asif"]
        np.testing.assert_allclose(r.json()["probabilities"], want.probabilities, atol=1e-6)
        r = c.post("/collections/vecs/classify/vector", json={"vector": q[0, :5].tolist(), "labels": labels})
        assert r.status_code in (409, 422) and "width 24" in r.json()["error"]
        for labels_given in (["a", "a"], ["a", " b"], [""] * 2, ["a"]):
            r = c.post("/collections/vecs/classify/vector", json={"vector": q[0].tolist(), "labels": labels_given})
            assert r.status_code == 422, labels_given
        assert "expected distinct labels" in c.post("/collections/vecs/classify/vector", json={
            "vector": q[0].tolist(), "labels": ["a", "a"]}).json()["error"]
        r = c.post("/collections/vecs/classify/vector", json={"vector": q[0].tolist(), "labels": labels,
                                                              "template": "no braces"})
        assert r.status_code == 422
