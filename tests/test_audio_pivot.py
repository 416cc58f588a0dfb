"""Sound collections and the pivot route, end to end with the fake encoders (milliseconds, no model)."""

import json
from pathlib import Path

import pytest

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.errors import InputError
from retrieval.media.tables import rows_from

# without the corpus's own pairs, which reorder the pivot's zero-score tail against the words'
FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", audio_encoder="fake-audio", cache_dir="",
            self_anchors=False)


@pytest.fixture(params=["none", "bank"])
def image_col_with_sounds(request, tiny_data, tone_data, fake_encoders, bank_table, tmp_path):
    # with a background bank too: pivot sets never take it
    bank = bank_table if request.param == "bank" else "none"
    return build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "img", pivots=[tone_data["anchors"]],
                            k=3, p=2.0, background=bank, **FAKE)


@pytest.fixture
def sound_col(tone_data, fake_encoders, tmp_path):
    return build_collection(tone_data["corpus"], tone_data["anchors"], tmp_path / "snd", k=3, p=2.0, **FAKE)


def test_a_sound_finds_images_through_text(image_col_with_sounds, tone_data):
    col = Collection.open(image_col_with_sounds)
    assert col.modality == "image" and set(col.manifest["encoders"]) == {"image", "text", "audio"}
    p = col.plan("audio")
    assert (p.route, p.via, p.then) == ("pivot", "text", "relative")
    for colour in tone_data["pitch"]:
        query = str(Path(tone_data["corpus"]) / f"{colour}.wav")  # not an anchor: another length and loudness
        hits = col.search(query, k=3)  # a .wav path is taken as audio
        assert hits[0].kind == "image" and Path(hits[0].path).stem == colour
    # to texts, the pivot lands in text space and ends with a plain text search
    hits = col.search(str(Path(tone_data["corpus"]) / "green.wav"), k=2, target="text")
    assert col.plan("audio", "text").then == "absolute"
    assert "green" in hits[0].caption


def test_pivot_agrees_with_asking_in_words(image_col_with_sounds, tone_data):
    """A purple tone must rank the images as the caption of the anchor tone it matches does."""
    col = Collection.open(image_col_with_sounds)
    n = len(col.items["path"])
    for colour in tone_data["pitch"]:
        by_sound = col.search(str(Path(tone_data["corpus"]) / f"{colour}.wav"), k=n)
        by_text = col.search(f"a {colour} noise", k=n)
        assert [h.id for h in by_sound] == [h.id for h in by_text]


def test_a_sound_collection_answers_text_and_sound(sound_col, tone_data):
    col = Collection.open(sound_col)
    assert col.modality == "audio" and col.info()["modality"] == "audio"
    hits = col.search("a yellow noise", k=3)
    assert hits[0].kind == "audio" and Path(hits[0].path).stem == "yellow"
    assert col.plan("text").route == "fusion"  # the measured best for text -> audio (planner.PAIR_PRIOR)
    for route in ("relative", "translation", "fusion"):
        assert Path(col.search("a yellow noise", k=1, route=route)[0].path).stem == "yellow"
    same = col.search(str(Path(tone_data["anchors"]) / "grey.wav"), k=1)  # audio -> audio: raw embeddings
    assert col.plan("audio").route == "absolute" and Path(same[0].path).stem == "grey"
    labels = col.classify(None, ["red", "green", "blue", "yellow", "purple", "orange", "black", "grey"],
                          templates=["a {} noise"], k=1)
    assert sum(Path(p).stem == lab.labels[0] for p, lab in zip(col.items["path"], labels)) >= 6


def test_queries_of_a_modality_without_encoder_are_refused_clearly(tiny_collection, tone_data):
    col = Collection.open(tiny_collection)
    with pytest.raises(InputError, match=r"modalities \['image', 'text'\], got 'audio'; add audio-text anchors"):
        col.search(str(Path(tone_data["corpus"]) / "red.wav"))
    with pytest.raises(InputError, match=r"expected an existing audio file, got 'missing.wav'"):
        col.search("missing.wav")


def test_pivot_sets_must_be_another_modality(tiny_data, fake_encoders, tmp_path):
    with pytest.raises(InputError, match="pivot anchors of a modality other than the collection's \\(image\\)"):
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "x", pivots=[tiny_data["anchors"]], **FAKE)
    assert not (tmp_path / "x").exists()


def test_a_corpus_of_the_wrong_modality_is_refused(tiny_data, tone_data, fake_encoders, tmp_path):
    with pytest.raises(InputError, match=r"expected at least one image file in the corpus .*sounds"):
        build_collection(tone_data["corpus"], tiny_data["anchors"], tmp_path / "x", **FAKE)


def test_media_kind_is_read_off_folders_and_tables(tiny_data, tone_data, tmp_path):
    assert rows_from(tone_data["corpus"], caption_required=False, what="corpus")[0] == "audio"
    assert rows_from(tiny_data["corpus"], caption_required=False, what="corpus")[0] == "image"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for src in (Path(tone_data["corpus"]) / "red.wav", Path(tiny_data["corpus"]) / "red.png"):
        (mixed / src.name).write_bytes(src.read_bytes())
    with pytest.raises(InputError, match=r"one kind of media .* got 1 image files, 1 audio files"):
        rows_from(mixed, caption_required=False, what="corpus")
    assert rows_from(mixed, caption_required=False, what="corpus", modality="audio")[1][0]["path"].endswith("red.wav")
    csv = tmp_path / "sounds.csv"
    csv.write_text("path,caption\n" + f"{Path(tone_data['corpus']) / 'red.wav'},red\n")
    assert rows_from(csv, caption_required=True, what="anchor")[0] == "audio"


def test_cli_searches_and_explains_with_a_sound(image_col_with_sounds, tone_data, capsys):
    query = str(Path(tone_data["corpus"]) / "blue.wav")
    assert main(["search", str(image_col_with_sounds), "--audio", query, "-k", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["modality"] == "audio" and list(out["results"]) == ["image"]
    assert Path(out["results"]["image"][0]["path"]).stem == "blue"
    assert main(["explain", str(image_col_with_sounds), "--audio", query]) == 0
    text = capsys.readouterr().out
    assert "route pivot" in text and "pivot into text" in text
    assert main(["explain", str(image_col_with_sounds), "--audio", query, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["route"], plan["via"], plan["then"]) == ("pivot", "text", "relative")
    assert main(["info", str(image_col_with_sounds)]) == 0
    assert "audio-text pairs" in capsys.readouterr().out
    assert main(["search", str(image_col_with_sounds), "--audio", query, "--image", query]) == 2
    assert "expected exactly one of" in capsys.readouterr().err


def test_version_1_collections_still_open(tiny_collection):
    m = json.loads((tiny_collection / "manifest.json").read_text())
    for key in ("items", "pivots"):
        m.pop(key)
    m["format_version"] = 1
    m.pop("manifest_sha256")  # version 1 manifests had no checksum of their own
    m["anchors"].pop("modalities")
    (tiny_collection / "manifest.json").write_text(json.dumps(m))
    col = Collection.open(tiny_collection)
    assert col.modality == "image" and col.search("a red square", k=1)[0].kind == "image"

