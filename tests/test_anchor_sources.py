"""Anchor sources by name: several sets combined, datasets (saved with save_to_disk here, as the hub
is out of reach), packs, and the 'anchors' command."""

import json

import pyarrow.parquet as pq
import pytest

from retrieval import Collection, build_collection
from retrieval.build.anchors import load_anchor_set
from retrieval.errors import InputError, UnknownNameError

KW = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0, background="none",
          labels=False)


def answers(col, colours):
    return [[h.path for h in hits] for hits in col.search_many([f"a {c} thing" for c in colours], k=4)]


def halves(tiny_data, tmp_path):
    t = pq.read_table(tiny_data["anchors"])
    root = tiny_data["root"]
    for name, part in (("h1", t.slice(0, 4)), ("h2", t.slice(4))):
        pq.write_table(part, root / f"{name}.parquet")
    return str(root / "h1.parquet"), str(root / "h2.parquet")


def test_two_sources_are_one_set_that_answers_as_the_whole_table(tiny_data, fake_encoders, tmp_path):
    h1, h2 = halves(tiny_data, tmp_path)
    whole = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "whole", **KW))
    both = Collection.open(build_collection(tiny_data["corpus"], [h1, h2], tmp_path / "both", **KW))
    assert both.manifest["anchors"]["count"] == whole.manifest["anchors"]["count"]
    assert both.manifest["anchors"]["source"] == f"{h1} + {h2}"
    assert answers(both, tiny_data["colours"]) == answers(whole, tiny_data["colours"])
    again = load_anchor_set(both.manifest["anchors"]["source"])  # the recorded source reads back
    assert again.content_hash == both.manifest["anchors"]["content_hash"]


def test_sources_of_two_modalities_are_refused(tiny_data, tone_data):
    with pytest.raises(InputError, match="one modality"):
        load_anchor_set([tiny_data["anchors"], tone_data["anchors"]])


def saved_dataset(tiny_data, tmp_path, *, list_captions=False, splits=False):
    datasets = pytest.importorskip("datasets")
    t = pq.read_table(tiny_data["anchors"]).to_pydict()
    caps = [[c, "another caption"] for c in t["caption"]] if list_captions else t["caption"]
    ds = datasets.Dataset.from_dict({"img": tiny_data["anchor_images"], "words": caps, "n": list(range(len(caps)))})
    ds = ds.cast_column("img", datasets.Image())
    if splits:
        ds = datasets.DatasetDict({"train": ds, "test": ds.select(range(4))})
    ds.save_to_disk(str(tmp_path / "saved"))
    return str(tmp_path / "saved")


def test_a_saved_dataset_answers_as_the_table_it_was_made_from(tiny_data, fake_encoders, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    folder = saved_dataset(tiny_data, tmp_path, list_captions=True)
    table = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "table", **KW))
    for i, spec in enumerate((f"{folder}#caption=words", f"hf:{folder}#image=img,caption=words")):
        col = Collection.open(build_collection(tiny_data["corpus"], spec, tmp_path / f"ds{i}", **KW))
        assert col.manifest["anchors"]["source"] == spec
        assert answers(col, tiny_data["colours"]) == answers(table, tiny_data["colours"])
    cached = list((tmp_path / "cache" / "datasets").iterdir())
    assert len(cached) == 1 and not any(p.name.startswith(".") for p in cached)  # made once, nothing half-written


def test_a_split_is_chosen_by_name_and_bad_columns_list_what_there_is(tiny_data, fake_encoders, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    folder = saved_dataset(tiny_data, tmp_path, splits=True)
    assert len(load_anchor_set(f"hf:{folder}:test#caption=words")) == 4
    with pytest.raises(InputError, match=r"split of .* among \['test', 'train'\], got None"):
        load_anchor_set(f"{folder}#caption=words")
    with pytest.raises(InputError, match=r"column 'caption2' for the caption .* got columns \['img', 'words', 'n'\]"):
        load_anchor_set(f"hf:{folder}:train#caption=caption2")
    with pytest.raises(InputError, match="expected a caption column"):
        load_anchor_set(f"hf:{folder}:train")
    with pytest.raises(InputError, match="column mapping"):
        load_anchor_set(f"hf:{folder}:train#colour=words")


def data_folder(tiny_data, tmp_path):
    """The anchors as a folder of Parquet data files, as a dataset repository on the hub holds them."""
    datasets = pytest.importorskip("datasets")
    t = pq.read_table(tiny_data["anchors"]).to_pydict()
    ds = datasets.Dataset.from_dict({"img": tiny_data["anchor_images"], "words": t["caption"]})
    ds = ds.cast_column("img", datasets.Image())
    (tmp_path / "repo" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet"))
    return str(tmp_path / "repo")


def test_a_data_folder_is_streamed_and_rows_takes_the_first_pairs(tiny_data, fake_encoders, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    folder = data_folder(tiny_data, tmp_path)
    table = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "table", **KW))
    col = Collection.open(build_collection(tiny_data["corpus"], f"hf:{folder}:train#caption=words", tmp_path / "ds",
                                           **KW))
    assert answers(col, tiny_data["colours"]) == answers(table, tiny_data["colours"])
    first = load_anchor_set(f"hf:{folder}:train#caption=words,rows=5")
    assert len(first) == 5 and first.captions == pq.read_table(tiny_data["anchors"]).to_pydict()["caption"][:5]
    with pytest.raises(InputError, match=r"rows=N with N >= 1 .* got rows='0'"):
        load_anchor_set(f"hf:{folder}:train#caption=words,rows=0")


def test_a_hub_name_offline_says_what_to_do():
    pytest.importorskip("datasets")
    with pytest.raises(InputError, match="save_to_disk"):
        load_anchor_set("hf:nobody/no-such-dataset")


def test_a_pack_is_made_once_and_read_as_a_table(tiny_data, fake_encoders, tmp_path, monkeypatch):
    from retrieval.datasets import packs

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    t = pq.read_table(tiny_data["anchors"]).to_pydict()
    made = []

    def rows(cache, show):
        made.append(cache)
        return tiny_data["anchor_images"], t["caption"]

    monkeypatch.setitem(packs.PACKS, "tiny", packs.Pack("image", "the tiny squares", rows, lambda: []))
    table = Collection.open(build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "table", **KW))
    col = Collection.open(build_collection(tiny_data["corpus"], "pack:tiny", tmp_path / "pack", **KW))
    assert answers(col, tiny_data["colours"]) == answers(table, tiny_data["colours"])
    build_collection(tiny_data["corpus"], "pack:tiny", tmp_path / "pack2", **KW)
    assert len(made) == 1
    with pytest.raises(UnknownNameError, match="packs: .*emoji.*tiny"):
        load_anchor_set("pack:nothing")


def test_the_anchors_command_lists_packs_and_prepares_sources(tiny_data, tmp_path, monkeypatch, capsys):
    from retrieval.cli.main import main

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    assert main(["anchors", "list", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert {"emoji", "tuxpaint", "scratch", "sounds"} <= set(listed) and all("missing" in p for p in listed.values())
    h1, h2 = halves(tiny_data, tmp_path)
    assert main(["anchors", "prepare", h1, h2, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["pairs"] == len(pq.read_table(tiny_data["anchors"])) and got["modality"] == "image"
    assert main(["anchors", "prepare", "pack:nothing"]) != 0
    assert "unknown anchor pack" in capsys.readouterr().err


def test_build_takes_repeated_anchors_on_the_command_line(tiny_data, fake_encoders, tmp_path, monkeypatch):
    from retrieval.cli.main import main

    h1, h2 = halves(tiny_data, tmp_path)
    monkeypatch.setenv("RETRIEVAL_BACKGROUND", "none")
    assert main(["build", "--corpus", tiny_data["corpus"], "--anchors", h1, "--anchors", h2, "--out",
                 str(tmp_path / "col"), "--image-encoder", "fake-image", "--text-encoder", "fake-text",
                 "--no-labels", "--no-progress", "--no-self-anchors"]) == 0
    assert Collection.open(tmp_path / "col").manifest["anchors"]["count"] == len(pq.read_table(tiny_data["anchors"]))
