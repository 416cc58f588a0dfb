"""Nothing lost, nothing surprising: what a new or a hostile user found by hand (issue 20), each
reproduced here through the CLI or the API as they ran it."""

import json
import os
import re
import shutil
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from retrieval import Collection, build_collection
from retrieval.cli.main import main
from retrieval.errors import CollectionFormatError, InputError
from tests.conftest import flat

from .conftest import solid

FAKE = dict(image_encoder="fake-image", text_encoder="fake-text", cache_dir="", k=3, p=2.0)
FAKE_ARGS = ["--image-encoder", "fake-image", "--text-encoder", "fake-text", "--cache-dir", "", "-k", "3",
             "--no-progress"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def bomb(path, side=20_000):
    """A PNG of side x side pixels (400 Mpx by default) that compresses to a few hundred kB."""
    Image.new("1", (side, side)).save(path, "PNG")
    return path


# ---- 1. --overwrite deletes only collections -------------------------------------------------------

def test_overwrite_never_deletes_a_folder_that_is_not_a_collection(tiny_data, fake_encoders, tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years of work")
    (mine / "data.csv").write_text("a,b\n1,2\n")
    code, _, err = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                       "--out", mine, "--overwrite", *FAKE_ARGS)
    assert code == 2 and "nothing was deleted" in err and "no retrieval manifest.json" in err
    assert sorted(p.name for p in mine.iterdir()) == ["data.csv", "thesis.txt"]
    assert "fake-image" not in fake_encoders  # refused before any encoder was even loaded
    # a collection is replaced as before
    col = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", **FAKE)
    code, _, _ = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                     "--out", col, "--overwrite", *FAKE_ARGS, "-p", "3")
    assert code == 0 and flat(Collection.open(col).manifest)["p"] == 3.0


def test_out_dot_and_unwritable_places_are_refused_before_encoding(tiny_data, fake_encoders, tmp_path, capsys,
                                                                  monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    monkeypatch.chdir(work)
    for out in (".", str(tmp_path)):  # the working directory, and a folder that holds it
        code, _, err = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                           "--out", out, "--overwrite", *FAKE_ARGS)
        assert code == 2 and "current directory" in err, err
    assert (work / "keep.txt").is_file()
    (tmp_path / "a-file").write_text("x")
    unwritable = [tmp_path / "a-file" / "col"]  # a path through a file
    if os.path.isdir("/sys/kernel"):
        unwritable.append(Path("/sys/kernel/retrieval-col"))  # read-only even for root
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        unwritable.append(ro / "col")
    for out in unwritable:
        code, _, err = cli(capsys, "build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"],
                           "--out", out, *FAKE_ARGS)
        assert code == 2 and "error:" in err and "Traceback" not in err, (out, err)
    assert not fake_encoders  # every refusal came before any encoder was even loaded


# ---- 2. positional arguments after options ---------------------------------------------------------

def test_classify_files_after_labels_as_the_readme_writes_it(tiny_collection, tiny_data, capsys, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(tiny_data["colours"]))
    a, b = tiny_data["anchor_images"][:2]
    code, out, err = cli(capsys, "classify", tiny_collection, "--labels", labels, a, b, "-k", "1")
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines()] == ["red", "green"]
    assert "signals: asif" in err and re.search(r"red \(0\.\d\d\)", out)  # what was used; probabilities
    code, out, _ = cli(capsys, "classify", tiny_collection, a, "--labels", labels, b, "--json", "-k", "1")
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and [r["labels"] for r in rows] == [["red"], ["green"]]
    assert all(0 < r["probabilities"][0] <= 1 and r["signals"] == ["asif"] and not r["abstained"] for r in rows)
    code, out, _ = cli(capsys, "classify", tiny_collection, a, "--labels", labels, "--abstain", "1", "-k", "1")
    assert code == 0 and "none of these (below 1: red (0." in out
    one = tmp_path / "one.txt"
    one.write_text("red\n")
    code, _, err = cli(capsys, "classify", tiny_collection, a, "--labels", one)
    assert code == 2 and "at least two labels" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:  # argparse's own refusal, still exit 2
        main(["classify", str(tiny_collection), "--labels", str(labels), a, "--no-such-option"])
    assert exc.value.code == 2 and "unrecognized arguments: --no-such-option" in capsys.readouterr().err


def test_classify_takes_labels_separated_by_commas(tiny_collection, tiny_data, capsys, tmp_path, monkeypatch):
    a, b = tiny_data["anchor_images"][:2]
    inline = ", ".join(tiny_data["colours"])
    code, out, err = cli(capsys, "classify", tiny_collection, "--labels", inline, a, b, "-k", "1")
    assert code == 0, err
    assert [line.split()[1] for line in out.splitlines()] == ["red", "green"]
    code, _, err = cli(capsys, "classify", tiny_collection, a, "--labels", "red,,green")
    assert code == 2 and "non-empty labels" in err and "Traceback" not in err
    code, _, err = cli(capsys, "classify", tiny_collection, a, "--labels", "red")  # no file, no comma
    assert code == 2 and "labels separated by commas" in err and "'red'" in err
    monkeypatch.chdir(tmp_path)  # a file whose name has a comma is read, not split
    (tmp_path / "red,green").write_text("red\nblue\n")
    code, out, err = cli(capsys, "classify", tiny_collection, a, "--labels", "red,green", "--json", "-k", "2")
    assert code == 0, err
    assert sorted(json.loads(out.splitlines()[0])["labels"]) == ["blue", "red"]


@pytest.mark.parametrize("template", ["a {} of {}", "{} {}", "{}{", "{} {0}", "no slot", "{x}"])
def test_bad_templates_are_clear_errors(tiny_collection, tiny_data, capsys, tmp_path, template):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\n")
    code, _, err = cli(capsys, "classify", tiny_collection, "--labels", labels, "--template", template)
    assert code == 2 and "expected a prompt template with exactly one {}" in err and "Traceback" not in err


# ---- 3. a collection opens from any working directory ---------------------------------------------

def test_a_collection_built_with_relative_paths_works_from_elsewhere(tiny_data, fake_encoders, tmp_path,
                                                                    monkeypatch, capsys):
    monkeypatch.chdir(tiny_data["root"])
    assert cli(capsys, "build", "--corpus", "corpus", "--anchors", "anchors.parquet", "--out", "indexes/col",
               *FAKE_ARGS)[0] == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    col = Collection.open(tiny_data["root"] / "indexes" / "col")
    hit = col.search("a red square", k=1)[0]
    assert os.path.isabs(hit.path) and os.path.isfile(hit.path) and hit.path.endswith("red.png")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    with TestClient(create_app({"col": str(col.folder)}), raise_server_exceptions=False) as client:
        assert client.get(f"/collections/col/items/{hit.id}/file").status_code == 200
        os.unlink(hit.path)
        r = client.get(f"/collections/col/items/{hit.id}/file")
        assert r.status_code == 404 and "moved or deleted after the build" in r.json()["error"]
        other = tmp_path / "outside.png"
        solid(other, "blue")
        os.symlink(other, hit.path)
        r = client.get(f"/collections/col/items/{hit.id}/file")
        assert r.status_code == 403 and "link to a place outside its folder" in r.json()["error"]


# ---- 4. decompression bombs are skipped, named and refused, never a traceback ----------------------

def test_decompression_bombs_in_build_add_and_search(tiny_data, fake_encoders, tmp_path, capsys):
    corpus = tmp_path / "corpus-with-bomb"
    shutil.copytree(tiny_data["corpus"], corpus)
    bomb(corpus / "bomb.png")
    bomb(corpus / "big.png", side=10_000)  # 100 Mpx: over the limit, below Pillow's own refusal
    out = tmp_path / "col"
    code, text, err = cli(capsys, "build", "--corpus", corpus, "--anchors", tiny_data["anchors"], "--out", out,
                          *FAKE_ARGS)
    assert code == 0 and "2 skipped" in text and "bomb.png" in err and "big.png" in err
    skipped = {Path(s["path"]).name: s["reason"] for s in Collection.open(out).info()["skipped"]}
    assert "at most 89,478,485 pixels" in skipped["bomb.png"] and "10000 x 10000" in skipped["big.png"]
    more = tmp_path / "more"
    more.mkdir()
    bomb(more / "bomb2.png")
    solid(more / "new.png", "grey", size=30)
    code, text, err = cli(capsys, "add", out, "--corpus", more, "--no-progress")
    assert code == 0 and "added 1 items" in text and "bomb2.png" in err
    code, _, err = cli(capsys, "search", out, "--image", more / "bomb2.png")
    assert code == 2 and "at most 89,478,485 pixels" in err and "Traceback" not in err


# ---- 6. duplicates, hand-edited manifests, leftovers, file modes -----------------------------------

def test_adding_the_same_files_twice_is_refused_or_skipped(tiny_collection, tiny_data, capsys, tmp_path):
    before = Collection.open(tiny_collection).info()["counts"]["items"]
    code, _, err = cli(capsys, "add", tiny_collection, "--corpus", tiny_data["corpus"], "--no-progress")
    assert code == 2 and "already there" in err and "same content as item" in err and "Nothing was added" in err
    assert Collection.open(tiny_collection).info()["counts"]["items"] == before
    new = tmp_path / "new"
    shutil.copytree(tiny_data["corpus"], new)  # the same pictures under other names, and one new one
    solid(new / "fresh.png", "grey", size=26)
    code, text, _ = cli(capsys, "add", tiny_collection, "--corpus", new, "--skip-duplicates", "--no-progress")
    assert code == 0 and "added 1 items" in text and "8 skipped" in text
    code, text, _ = cli(capsys, "add", tiny_collection, "--corpus", new, "--allow-duplicates", "--no-progress")
    assert code == 0 and "added 9 items" in text
    assert Collection.open(tiny_collection).info()["counts"]["items"] == before + 10


def test_a_collection_built_before_hashes_learns_them_on_add(tiny_collection, tiny_data, tmp_path):
    t = pq.read_table(tiny_collection / "items.parquet")
    assert "sha256" in t.column_names
    from retrieval.store.arrow import sha256_file
    from retrieval.store.format import write_manifest

    pq.write_table(t.drop_columns(["sha256"]), tiny_collection / "items.parquet")  # as an older build wrote it
    m = json.loads((tiny_collection / "manifest.json").read_text())
    m["files"]["items.parquet"] = {"sha256": sha256_file(str(tiny_collection / "items.parquet")),
                                   "bytes": (tiny_collection / "items.parquet").stat().st_size}
    write_manifest(tiny_collection / "manifest.json", m)
    with pytest.raises(InputError, match="already there"):
        Collection.open(tiny_collection).add(tiny_data["corpus"])


def test_a_hand_edited_manifest_is_refused(tiny_collection):
    m = json.loads((tiny_collection / "manifest.json").read_text())
    steps = dict(m["projectors"], text=[dict(s, p=9.0) if s["step"] == "asif" else s for s in m["projectors"]["text"]])
    for edit in ({"projectors": steps}, {"counts": dict(m["counts"], items=3)}):
        (tiny_collection / "manifest.json").write_text(json.dumps(dict(m, **edit), indent=2))
        with pytest.raises(CollectionFormatError, match="match its own checksum"):
            Collection.open(tiny_collection)
        with pytest.raises(CollectionFormatError, match="match its own checksum"):
            Collection.open(tiny_collection, verify=False)  # cheap, so checked even without --verify
    (tiny_collection / "manifest.json").write_text(json.dumps(m, indent=4))  # reformatted, unchanged: fine
    assert flat(Collection.open(tiny_collection).manifest)["p"] == flat(m)["p"]


def test_leftovers_of_a_killed_write_are_cleaned_or_restored(tiny_collection, tiny_data, fake_encoders, tmp_path):
    parent = tiny_collection.parent
    dead = parent / f".{tiny_collection.name}.tmp-999999999-abcd"  # no such process
    legacy = parent / f".{tiny_collection.name}.tmp-k2j3h4g5"       # named as before process ids were
    alive = parent / f".{tiny_collection.name}.tmp-{os.getppid()}-abcd"  # a writer still running
    for d in (dead, legacy, alive):
        d.mkdir()
        (d / "items.parquet").write_bytes(b"half")
    os.utime(legacy, (1, 1))
    build_collection(tiny_data["corpus"], tiny_data["anchors"], tiny_collection, overwrite=True, **FAKE)
    assert not dead.exists() and not legacy.exists() and alive.exists()
    shutil.rmtree(alive)
    # killed between the two renames: the old version aside, the new one not in place
    old = parent / f".{tiny_collection.name}.old-999999999-abcd"
    os.replace(tiny_collection, old)
    with pytest.raises(InputError, match="which exists"):  # the next write restores it, then sees it
        build_collection(tiny_data["corpus"], tiny_data["anchors"], tiny_collection, **FAKE)
    assert not old.exists() and Collection.open(tiny_collection).search("a red square", k=1)


def test_files_and_folders_follow_the_umask(tiny_data, fake_encoders, tmp_path):
    old = os.umask(0o022)
    try:
        out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", **FAKE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes["items.parquet"] == modes["manifest.json"] == modes["image_vectors.npy"] == 0o644, modes


def test_server_refuses_bad_templates_with_400(tiny_collection, fake_encoders):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from retrieval.serve.server import create_app

    png = Path(tiny_collection).parent / "anchors" / "red.png"
    with TestClient(create_app({"col": str(tiny_collection)}), raise_server_exceptions=False) as client:
        for template in ("{} {}", "{}{", "{} {0}"):
            r = client.post("/collections/col/classify", files={"file": ("q.png", png.read_bytes(), "image/png")},
                            data={"labels": "red, green", "template": template})
            assert r.status_code in (400, 422) and "exactly one {}" in r.json()["error"], (template, r.text)
        r = client.post("/collections/col/search", content=b'{"query": "a red', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "not JSON" in r.json()["error"]
