"""Captions embedded in image files (retrieval/media/metadata.py): XMP before IPTC before EXIF, then
keywords; camera names are not captions; unreadable metadata gives none and is counted, never fatal;
a build takes them for images without a table or sidecar caption, and not when told not to."""

import numpy as np
import pytest
from PIL import Image

from retrieval import Collection, build_collection
from retrieval.build.builder import embedded_captions
from retrieval.errors import UnknownNameError
from retrieval.media.metadata import caption_of, embedded_caption

from .conftest import COLOURS

XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/">{}</rdf:Description></rdf:RDF></x:xmpmeta>')


def picture(path, colour="red", description=None, xmp=None, make=None):
    img = Image.new("RGB", (24, 24), (255, 255, 255))
    img.paste(Image.new("RGB", (16, 16), COLOURS[colour]), (4, 4))
    exif = Image.Exif()
    if description is not None:
        exif[270] = description
    if make is not None:
        exif[271] = make
    img.save(path, exif=exif, **({"xmp": XMP.format(xmp).encode()} if xmp else {}))
    return str(path)


def test_xmp_comes_before_exif_and_keywords_stand_in_for_a_description(tmp_path):
    both = picture(tmp_path / "a.jpg", description="an exif text",
                   xmp='<dc:description><rdf:Alt><rdf:li xml:lang="x-default">a red  square</rdf:li></rdf:Alt>'
                       '</dc:description>')
    assert embedded_caption(both) == ("a red square", True)
    assert embedded_caption(picture(tmp_path / "b.jpg", description="a blue square")) == ("a blue square", True)
    keywords = picture(tmp_path / "c.jpg", xmp="<dc:subject><rdf:Bag><rdf:li>square</rdf:li><rdf:li>green</rdf:li>"
                                                "</rdf:Bag></dc:subject>")
    assert embedded_caption(keywords) == ("square, green", True)
    assert embedded_caption(picture(tmp_path / "d.jpg")) == (None, True)


def test_camera_names_are_not_captions(tmp_path):
    assert embedded_caption(picture(tmp_path / "a.jpg", description="OLYMPUS DIGITAL CAMERA")) == (None, True)
    assert embedded_caption(picture(tmp_path / "b.jpg", description="Canon EOS 5D", make="Canon EOS 5D"))[0] is None
    assert caption_of({"xmp description": ["  "], "iptc caption": ["a cat\x00"], "exif description": [],
                       "keywords": [], "camera": []}) == "a cat"


def test_unreadable_metadata_gives_no_caption_and_is_counted(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage-not-tiff" + b"\x00" * 32)
    assert embedded_caption(bad) == (None, False)
    rows = [{"path": str(bad), "caption": None}, {"path": picture(tmp_path / "ok.jpg", description="a red square"),
                                                 "caption": None},
            {"path": picture(tmp_path / "kept.jpg", description="ignored"), "caption": "the table's caption"}]
    assert embedded_captions(rows, False) == {"found": 1, "unreadable": 1}
    assert [r["caption"] for r in rows] == [None, "a red square", "the table's caption"]


@pytest.mark.parametrize("embedded", [True, False])
def test_a_build_takes_embedded_captions_unless_told_not_to(tiny_data, fake_encoders, tmp_path, embedded):
    folder = tmp_path / "photos"
    folder.mkdir()
    for c in COLOURS:
        picture(folder / f"{c}.jpg", c, description=f"a {c} photo")
    col = Collection.open(build_collection(str(folder), tiny_data["anchors"], tmp_path / "col", image_encoder="fake-image",
                                           text_encoder="fake-text", cache_dir="", background="none",
                                           embedded_captions=embedded))
    captions = list(col.items["caption"])
    if embedded:
        assert sorted(captions) == sorted(f"a {c} photo" for c in COLOURS)
        assert col.manifest["counts"]["corpus_captions"] == len(COLOURS) and col.manifest["anchors"]["self"]["kept"]
        assert np.all([h.caption == "a red photo" for h in col.search("a red photo", k=1)])
    else:
        assert captions == [None] * len(COLOURS) and "self" not in col.manifest["anchors"]


def test_file_names_are_captions_only_when_asked_and_never_camera_counters():
    from retrieval.media.names import name_caption

    named = {"red_apple.png": "red apple", "GoldenRetriever-02.jpg": "golden retriever 02", "t-junction.png": "t junction",
             "photo of a dog.jpg": "photo of a dog", "picnic.jpg": "picnic"}
    assert {p: name_caption(f"/x/{p}") for p in named} == named
    for generic in ("IMG_1234.JPG", "DSC01234.jpg", "DSCN0001.JPG", "PXL_20230101_123456.jpg", "P1010001.JPG",
                    "Screenshot 2020-01-01 at 10.00.00.png", "2020-01-01.jpg", "9.png", "untitled.png", "frame_0001.png"):
        assert name_caption(generic) is None, generic


def test_a_build_and_add_read_file_names_with_captions_from_names(tiny_data, fake_encoders, tmp_path):
    from retrieval.cli.main import main

    folder, more = tmp_path / "photos", tmp_path / "more"
    folder.mkdir(), more.mkdir()
    for c in list(COLOURS)[:6]:
        picture(folder / f"{c}_square.jpg", c, description=f"a {c} photo" if c == "red" else None)
    picture(folder / "IMG_0001.jpg", "grey")
    picture(more / "black_thing.jpg", "black")
    kw = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", background="none")
    plain = Collection.open(build_collection(str(folder), tiny_data["anchors"], tmp_path / "plain", **kw))
    assert sum(c is not None for c in plain.items["caption"]) == 1  # the embedded one only
    col = Collection.open(build_collection(str(folder), tiny_data["anchors"], tmp_path / "col", captions_from="names",
                                           **kw))
    captions = dict(zip([p.rsplit("/", 1)[-1] for p in col.items["path"]], col.items["caption"]))
    assert captions["red_square.jpg"] == "a red photo"  # its own description comes first
    assert captions["green_square.jpg"] == "green square" and captions["IMG_0001.jpg"] is None
    assert main(["add", str(col.folder), "--corpus", str(more), "--captions-from", "names"]) == 0
    assert "black thing" in list(Collection.open(col.folder).items["caption"])
    with pytest.raises(UnknownNameError, match="known: None, names"):
        build_collection(str(folder), tiny_data["anchors"], tmp_path / "bad", captions_from="folders", **kw)
