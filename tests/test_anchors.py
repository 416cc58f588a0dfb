import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrieval.build.anchors import AnchorSet, encode_anchors, load_anchor_set
from retrieval.errors import InputError

from .conftest import FakeImageEncoder, FakeTextEncoder, solid


def test_parquet_csv_and_folder_give_the_same_anchor_set(tiny_data, tmp_path):
    from_parquet = load_anchor_set(tiny_data["anchors"])
    csv = tiny_data["root"] / "anchors.csv"
    csv.write_text("image,caption\n" + "".join(f"anchors/{c}.png,a {c} square\n" for c in tiny_data["colours"]))
    folder = tmp_path / "folder"
    folder.mkdir()
    for c in tiny_data["colours"]:
        solid(folder / f"{c}.png", c, size=40)
        (folder / f"{c}.txt").write_text(f"a {c} square\n")
    from_csv, from_folder = load_anchor_set(csv), load_anchor_set(folder)
    assert len(from_parquet) == len(tiny_data["colours"])
    assert from_parquet.content_hash == from_csv.content_hash
    # the folder pairs each image with its own sidecar caption
    assert set(from_folder.captions) == set(from_parquet.captions)
    for img, cap in zip(from_folder.paths, from_folder.captions):
        assert cap == f"a {img.rsplit('/', 1)[-1][:-4]} square"


def test_mismatched_columns_name_what_was_found(tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"picture": ["a.png"], "words": ["x"]}), path)
    with pytest.raises(InputError, match=r"media path column named one of .* got columns \['picture', 'words'\]"):
        load_anchor_set(path)


def test_empty_captions_are_refused_with_rows_named(tiny_data, tmp_path):
    path = tmp_path / "empty.parquet"
    caps = [f"a {c} square" for c in tiny_data["colours"]]
    caps[2] = "  "
    pq.write_table(pa.table({"image": tiny_data["anchor_images"], "caption": caps}), path)
    with pytest.raises(InputError, match=r"non-empty caption for every anchor, got 1 empty: row 2"):
        load_anchor_set(path)


def test_missing_path_and_folder_without_sidecars(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_anchor_set(tmp_path / "nope.parquet")
    (tmp_path / "imgs").mkdir()
    solid(tmp_path / "imgs" / "a.png", "red")
    with pytest.raises(InputError, match="empty"):
        load_anchor_set(tmp_path / "imgs")
    with pytest.raises(InputError, match=r"\.parquet, \.pq, \.csv, \.arrow, \.feather, \.ipc or a folder"):
        load_anchor_set(tmp_path / "imgs" / "a.png")


def test_second_encoding_comes_from_the_cache(tiny_data, tmp_path):
    anchors = load_anchor_set(tiny_data["anchors"])
    enc = FakeImageEncoder()
    first = encode_anchors(anchors, enc, "image", cache_dir=str(tmp_path / "c"))
    assert enc.calls == len(anchors)
    second = encode_anchors(anchors, enc, "image", cache_dir=str(tmp_path / "c"))
    assert enc.calls == len(anchors)  # no re-encoding
    np.testing.assert_array_equal(first, second)
    # another encoder or another modality is another cache entry
    text = FakeTextEncoder()
    encode_anchors(anchors, text, "text", cache_dir=str(tmp_path / "c"))
    assert text.calls == len(anchors)


def test_changed_caption_or_damaged_cache_re_encodes(tiny_data, tmp_path):
    anchors = load_anchor_set(tiny_data["anchors"])
    enc = FakeTextEncoder()
    encode_anchors(anchors, enc, "text", cache_dir=str(tmp_path))
    edited = AnchorSet(anchors.paths, anchors.captions[:-1] + ["another caption"])
    assert edited.content_hash != anchors.content_hash
    encode_anchors(edited, enc, "text", cache_dir=str(tmp_path))
    assert enc.calls == 2 * len(anchors)
    for f in tmp_path.glob("anchors-*.parquet"):
        f.write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="ignoring unusable anchor cache"):
        again = encode_anchors(anchors, enc, "text", cache_dir=str(tmp_path))
    assert again.shape == (len(anchors), enc.dim)
