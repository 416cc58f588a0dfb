"""Swapping the anchors keeps the corpus: the result equals a fresh build with the new anchors (every
index backend, with label vectors and pivot sets carried), no corpus item is encoded, ids survive,
and what cannot be reanchored is refused before anything is written."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.api import reanchor
from retrieval.cli.main import main
from retrieval.errors import InputError
from tests.conftest import flat

from .conftest import COLOURS, solid, tone

LAB = dict(image_encoder="fake-labelled-image", text_encoder="fake-text", cache_dir="")
QUERIES = ["a red square", "a green box", "something blue", "yellow", "a black and grey thing"]


@pytest.fixture
def new_anchors(tiny_data):
    """Another anchor set for the same colours: other drawings (circles-free squares of another size,
    no inner margin) and other captions, plus two rows that draw a colour a second way."""
    root = tiny_data["root"] / "anchors2"
    root.mkdir()
    rows = [{"image": solid(root / f"{c}.png", c, size=48, shape=i % 2 == 0), "caption": f"the colour {c}"}
            for i, c in enumerate(COLOURS)]
    path = tiny_data["root"] / "anchors2.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def same_collections(a: Collection, b: Collection):
    ma, mb = a.manifest, b.manifest
    for key in ("projectors", "items", "encoders", "pivots"):
        assert ma[key] == mb[key], key
    assert {k: v for k, v in ma["counts"].items()} == mb["counts"]
    assert ma["anchors"]["content_hash"] == mb["anchors"]["content_hash"]
    assert {k: {x: y for x, y in v.items() if x != "files"} for k, v in ma["indexes"].items()} == \
        {k: {x: y for x, y in v.items() if x != "files"} for k, v in mb["indexes"].items()}
    assert (ma.get("labels") or {}) == (mb.get("labels") or {})
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    for m in (a.modality, "text"):
        np.testing.assert_allclose(np.asarray(a.sides[m].abs), np.asarray(b.sides[m].abs), atol=1e-6)
    for q in QUERIES:
        for target in (None, "text"):
            ha, hb = a.search(q, k=5, target=target), b.search(q, k=5, target=target)
            assert [(h.id, h.caption) for h in ha] == [(h.id, h.caption) for h in hb], (q, target)
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-5)


@pytest.mark.parametrize("index", ["exact", "inverted", "inverted:float32", "faiss", "torch"])
def test_reanchor_equals_a_fresh_build_with_the_new_anchors(tiny_data, new_anchors, fake_encoders, tmp_path, index):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "old", index=index, k=3, p=2.0, **LAB)
    fresh = Collection.open(build_collection(tiny_data["corpus"], new_anchors, tmp_path / "fresh", index=index, k=4,
                                             p=3.0, **LAB))
    fake_encoders["fake-labelled-image"].calls = fake_encoders["fake-text"].calls = 0
    out = reanchor(old, new_anchors, tmp_path / "re", k=4, p=3.0, cache_dir="")
    # only the 8 new anchors were encoded (images and captions): no corpus item, no corpus caption
    assert fake_encoders["fake-labelled-image"].calls == 8 and fake_encoders["fake-text"].calls == 8
    re = Collection.open(out)
    assert re.manifest["reanchored"]["previous_anchors"] == Collection.open(old).manifest["anchors"]["content_hash"]
    same_collections(re, fresh)
    assert re.plan("text").route == fresh.plan("text").route == "relative+labels"
    assert Collection.open(old).manifest["anchors"]["content_hash"] != re.manifest["anchors"]["content_hash"]


def test_reanchor_in_place_keeps_ids_pivots_and_the_index_backend(tiny_data, new_anchors, fake_encoders, tmp_path):
    snd = tiny_data["root"] / "sounds"
    snd.mkdir()
    pq.write_table(pa.table({"audio": [tone(snd / f"{c}.wav", 200 * (i + 1)) for i, c in enumerate(COLOURS)],
                             "caption": [f"a {c} square" for c in COLOURS]}), tiny_data["root"] / "pivots.parquet")
    col = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "c", index="inverted",
                                           pivots=[str(tiny_data["root"] / "pivots.parquet")],
                                           audio_encoder="fake-audio", **LAB)).delete([2, 5])
    before = col.manifest
    col = col.reanchor(new_anchors, cache_dir="")  # in place, atomically
    m = col.manifest
    assert col.folder == tmp_path / "c" and m["anchors"]["content_hash"] != before["anchors"]["content_hash"]
    assert col.item_ids.tolist() == [0, 1, 3, 4, 6, 7] and m["next_ids"]["items"] == before["next_ids"]["items"]
    assert m["indexes"]["image_relative"]["backend"] == "inverted"  # kept: not given
    assert m["pivots"] == before["pivots"] and m["labels"]["file"] == "image_labels.npy"
    first = list(COLOURS)[0]  # its pivot sound is the 200 Hz tone: a sound query still reaches its squares
    assert col.search(tone(tiny_data["root"] / "q.wav", 200), k=1, modality="audio")[0].path.endswith(f"{first}.png")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".c.")]  # no scratch left
    # still updatable: the content hashes came along (the six kept files are duplicates), and the two
    # deleted files come back under new ids, never their old ones
    assert col.add(tiny_data["corpus"], duplicates="skip").item_ids.tolist() == [0, 1, 3, 4, 6, 7, 8, 9]


def test_what_cannot_be_reanchored_is_refused_before_anything_is_written(tiny_data, fake_encoders, tmp_path):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "old", k=3, p=2.0, **LAB)
    manifest = (old / "manifest.json").read_text()
    snd = tiny_data["root"] / "snd"
    snd.mkdir()
    pq.write_table(pa.table({"audio": [tone(snd / "a.wav", 300)], "caption": ["a tone"]}), snd / "a.parquet")
    cases = [((str(snd / "a.parquet"),), {}, "expected anchors pairing image with text"),
             ((tiny_data["anchors"],), {"k": 50}, "k"),
             ((tiny_data["anchors"],), {"image_encoder": "efficientnet-lite2"}, "reanchoring keeps the stored embeddings"),
             ((tiny_data["anchors"], tmp_path / "old"), {"labels": False, "label_weight": -1}, "label weight"),
             ((tiny_data["anchors"], tiny_data["root"] / "corpus"), {}, "which exists; pass --overwrite"),
             ((tiny_data["anchors"], tiny_data["root"] / "corpus"), {"overwrite": True}, "nothing was deleted")]
    for args, kw, match in cases:
        with pytest.raises(InputError, match=match):
            reanchor(old, *args, cache_dir="", **kw)
        assert (old / "manifest.json").read_text() == manifest
    assert not (tmp_path / "new").exists()


def test_cli_reanchor(tiny_data, new_anchors, fake_encoders, tmp_path, capsys):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "old", k=3, p=2.0, **LAB)
    assert main(["reanchor", str(old), "--anchors", new_anchors, "--out", str(tmp_path / "new"), "-k", "4",
                 "--cache-dir", "", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "reanchored" in out and "against 8 anchors + 8 captioned corpus items (k=4" in out and "no item was encoded" in out
    m = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert flat(m)["k"] == 4 and flat(m)["p"] == 2.0  # p not given: the default for images
    assert main(["reanchor", str(old), "--anchors", str(tiny_data["root"] / "missing.csv")]) == 2


def test_a_reanchor_with_cached_anchors_loads_no_model(tiny_data, new_anchors, fake_encoders, tmp_path):
    old = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "old", k=3, p=2.0, **LAB)
    cache = str(tmp_path / "cache")
    reanchor(old, new_anchors, tmp_path / "a", k=4, cache_dir=cache)  # encodes the new anchors, once
    fake_encoders.clear()
    out = reanchor(old, new_anchors, tmp_path / "b", k=5, cache_dir=cache)  # another k: all cached
    assert fake_encoders == {}  # no encoder was even made
    assert flat(Collection.open(out).manifest)["k"] == 5
