"""Adding and deleting items: the result equals a build from scratch on the same items; deleted
items never come back; nothing is re-encoded; a failure leaves the collection untouched."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.errors import InputError

from .conftest import COLOURS, solid

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
QUERIES = ["a red square", "a blue square", "green box", "a orange square", "black box"]


@pytest.fixture
def split(tiny_data, tmp_path):
    """The tiny corpus as two tables (first half, second half) and one table of both, same order."""
    rows = []
    for c in COLOURS:
        for size in (24, 30):
            p = solid(tmp_path / "corpus" / f"{c}-{size}.png", c, size=size)
            rows.append({"image": p, "caption": f"{c} box" if size == 24 else None, "label": c})
    tables = {}
    for name, part in (("a", rows[:9]), ("b", rows[9:]), ("all", rows)):
        tables[name] = str(tmp_path / f"{name}.parquet")
        pq.write_table(pa.Table.from_pylist(part), tables[name])
    return tables


@pytest.mark.parametrize("index", ["exact", "inverted:float32", "faiss"])
def test_adding_equals_building_from_scratch(tiny_data, split, fake_encoders, tmp_path, index):
    # add never makes anchors of the new items' captions, where a fresh build would (test_self_anchors.py)
    kw = dict(FAKE, self_anchors=False)
    scratch = Collection.open(build_collection(split["all"], tiny_data["anchors"], tmp_path / "s", index=index, **kw))
    grown = Collection.open(build_collection(split["a"], tiny_data["anchors"], tmp_path / "g", index=index, **kw))
    grown = grown.add(split["b"])
    assert fake_encoders["fake-image"].calls == 7  # the encoder add loaded saw only the 7 new files
    assert grown.item_ids.tolist() == scratch.item_ids.tolist() == list(range(16))
    assert grown.items == scratch.items
    for q in QUERIES:
        a, b = scratch.search(q, k=8), grown.search(q, k=8)
        assert [h.id for h in a] == [h.id for h in b]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
    img = tiny_data["anchor_images"][2]

    def key(hits):  # text ids differ by insertion order
        return [(h.caption, h.source, h.item_id) for h in hits]

    assert key(scratch.search(img, k=6, target="text")) == key(grown.search(img, k=6, target="text"))
    m = grown.manifest
    assert m["counts"]["items"] == 16 and m["next_ids"]["items"] == 16 and m["updates"][-1]["op"] == "add"


def test_deleted_items_never_come_back(tiny_data, split, fake_encoders, tmp_path):
    col = Collection.open(build_collection(split["all"], tiny_data["anchors"], tmp_path / "c", index="inverted", **FAKE))
    red = [h.id for h in col.search("a red square", k=16) if h.label == "red"]
    assert len(red) == 2
    col = col.delete(red)
    assert not set(red) & {h.id for q in QUERIES for h in col.search(q, k=14)}
    assert not set(red) & {h.item_id for h in col.search(tiny_data["anchor_images"][0], k=30, target="text")}
    # new items get new ids; the deleted ids are not reused
    extra = tmp_path / "extra"
    extra.mkdir()
    solid(extra / "red-new.png", "red", size=28)
    col = col.add(extra)
    assert col.item_ids.max() == 16 and not set(red) & set(col.item_ids.tolist())
    top = col.search("a red square", k=1)[0]
    assert top.id == 16 and top.path.endswith("red-new.png")


def test_bad_updates_change_nothing(tiny_collection, tmp_path, fake_encoders):
    before = json.loads((tiny_collection / "manifest.json").read_text())
    with pytest.raises(InputError, match=r"expected ids of items .* got 2 unknown: \[99, 100\]"):
        Collection.open(tiny_collection).delete([3, 99, 100])
    with pytest.raises(InputError, match="would leave an empty collection"):
        Collection.open(tiny_collection).delete(range(8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="expected at least one image file"):
        Collection.open(tiny_collection).add(tmp_path / "empty")
    assert json.loads((tiny_collection / "manifest.json").read_text()) == before
    assert [p.name for p in tiny_collection.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_cli_add_and_delete(tiny_collection, tmp_path, fake_encoders, capsys):
    extra = tmp_path / "more"
    extra.mkdir()
    solid(extra / "blue-2.png", "blue", size=20)
    (extra / "broken.png").write_bytes(b"not a png")
    assert main(["add", str(tiny_collection), "--corpus", str(extra), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "added 1 items" in out.out and "1 skipped" in out.out and "broken.png" in out.err
    assert main(["delete", str(tiny_collection), "8"]) == 0
    assert "deleted 1 items" in capsys.readouterr().out
    assert main(["delete", str(tiny_collection), "8"]) == 2
    assert "unknown: [8]" in capsys.readouterr().err


def _as_format_2(folder: Path) -> None:
    """Rewrite a collection as format 2 wrote it: embeddings as table columns, no .npy files."""
    from retrieval.store.arrow import dense_column, sha256_file

    m = json.loads((folder / "manifest.json").read_text())
    for table, side in (("items.parquet", m["items"]["modality"]), ("texts.parquet", "text")):
        vecs = np.load(folder / f"{side}_vectors.npy")
        t = pq.read_table(folder / table)
        pq.write_table(t.add_column(4, f"{side}_vector", dense_column(vecs)), folder / table)
        (folder / f"{side}_vectors.npy").unlink()
        del m["files"][f"{side}_vectors.npy"]
        m["files"][table] = {"sha256": sha256_file(str(folder / table)), "bytes": (folder / table).stat().st_size}
    m["format_version"] = 2
    m.pop("manifest_sha256")  # format 2 manifests had no checksum of their own
    (folder / "manifest.json").write_text(json.dumps(m))


def test_format_2_collections_open_and_update_into_format_3(tiny_data, split, fake_encoders, tmp_path):
    new = build_collection(split["a"], tiny_data["anchors"], tmp_path / "new", **FAKE)
    old = shutil.copytree(new, tmp_path / "old")
    _as_format_2(old)
    assert not list(Path(old).glob("*.npy"))
    a, b = Collection.open(new), Collection.open(old)
    assert isinstance(a.sides["image"].abs, np.memmap) and not isinstance(b.sides["image"].abs, np.memmap)
    np.testing.assert_array_equal(a.sides["image"].abs, b.sides["image"].abs)
    for q in QUERIES:
        assert [h.id for h in a.search(q, k=5)] == [h.id for h in b.search(q, k=5)]
    for folder in (new, old):
        assert main(["add", str(folder), "--corpus", split["b"]]) == 0
    a, b = Collection.open(new), Collection.open(old)
    assert b.manifest["format_version"] == 7 and (Path(old) / "image_vectors.npy").is_file()
    assert "image_vector" not in pq.read_schema(Path(old) / "items.parquet").names
    for q in QUERIES:
        assert [h.id for h in a.search(q, k=8)] == [h.id for h in b.search(q, k=8)]


def test_inverted_collections_open_without_reading_vectors_into_memory(tiny_data, split, fake_encoders, tmp_path):
    col = Collection.open(build_collection(split["all"], tiny_data["anchors"], tmp_path / "c", index="inverted", **FAKE))
    for side in col.sides.values():
        assert isinstance(side.abs, np.memmap)  # embeddings: paged in on use
        assert "rel_indices" not in side.meta.column_names  # relative vectors: the index maps its own postings
    assert col.search("a red square", k=1)[0].label == "red"
