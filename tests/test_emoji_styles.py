"""The emoji art styles fetched from npm: SVG folders named by code points and Iconify icon sets named
by CLDR name, matched to concepts and rendered (tiny hand-written sets; no network)."""

import json
import tarfile

import numpy as np
import pytest

from retrieval.datasets import emoji
from retrieval.datasets.emoji import Concept, SvgStyle
from retrieval.errors import InputError

RED = '<path fill="#ff0000" d="M0 0h16v16H0z"/>'
BLUE = '<path fill="#0000ff" d="M0 0h16v16H0z"/>'


def _concept(key, name):
    return Concept(key, "".join(chr(int(c, 16)) for c in key.split("-")), name, None, None, "")


def test_iconify_names_cover_the_spellings_icon_sets_use():
    assert emoji.iconify_names("grinning face") == ["grinning-face"]
    assert emoji.iconify_names("flag: Åland Islands") == ["flag-aland-islands", "flag-for-aland-islands"]
    assert emoji.iconify_names("A button (blood type)") == ["a-button-blood-type", "a-button"]
    assert emoji.iconify_names("flag: Antigua & Barbuda")[1] == "flag-for-antigua-and-barbuda"
    assert len(set(emoji.iconify_names("keycap: #"))) == len(emoji.iconify_names("keycap: #"))  # no repeats


def test_iconify_svgs_match_by_name_follow_plain_aliases_and_skip_transformed_ones(tmp_path):
    icons = {"prefix": "t", "width": 16, "height": 16,
             "icons": {"grinning-face": {"body": RED}, "flag-for-andorra": {"body": BLUE, "width": 32}},
             "aliases": {"red-apple": {"parent": "apple"}, "apple": {"parent": "grinning-face"},
                         "loop-a": {"parent": "loop-b"}, "loop-b": {"parent": "loop-a"},
                         "green-apple": {"parent": "grinning-face", "hFlip": True}}}
    path = tmp_path / "icons.json"
    path.write_text(json.dumps(icons))
    cs = [_concept("1f600", "grinning face"), _concept("1f1e6-1f1e9", "flag: Andorra"),
          _concept("1f34e", "red apple"), _concept("1f34f", "green apple"), _concept("1f431", "cat face"),
          _concept("1f501", "loop a")]
    svgs = emoji.iconify_svgs(path, cs)
    # an alias of an alias is followed; a flipped alias is not the concept's drawing; a cycle draws nothing
    assert set(svgs) == {"1f600", "1f1e6-1f1e9", "1f34e"}
    assert b'viewBox="0 0 32 16"' in svgs["1f1e6-1f1e9"] and RED.encode() in svgs["1f34e"]


def test_render_svgs_draws_files_and_documents_on_white(tmp_path):
    pytest.importorskip("cairosvg")
    from PIL import Image

    svg_file = tmp_path / "1f600.svg"
    svg_file.write_text(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">{RED}</svg>')
    doc = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="4" fill="#00f"/></svg>'
    cs = [_concept("1f600", "grinning face"), _concept("1f34e", "red apple"), _concept("1f431", "cat face")]
    done = emoji.render_svgs({"1f600": svg_file, "1f34e": doc.encode(), "1f431": b"<not svg"}, cs, tmp_path / "png",
                             size=32, show_progress_bar=False)
    assert set(done) == {"1f600", "1f34e"}  # one that cairosvg cannot read has no drawing
    red = np.asarray(Image.open(done["1f600"]))
    apple = np.asarray(Image.open(done["1f34e"]))
    assert red.shape == (32, 32, 3) and (red[16, 16] == [255, 0, 0]).all()
    assert (apple[0, 0] == [255, 255, 255]).all() and (apple[16, 16] == [0, 0, 255]).all()  # transparent -> white
    assert not list((tmp_path / "png").glob(".*.tmp"))


def _npm_fake(tmp_path, monkeypatch, style: SvgStyle, files):
    """``npm pack`` replaced by writing a tarball with ``files`` (name -> text) into the destination."""
    import subprocess

    def fake_run(cmd, **kw):
        assert cmd[:3] == ["npm", "pack", style.package]
        dest = cmd[cmd.index("--pack-destination") + 1]
        src = tmp_path / "src"
        with tarfile.open(f"{dest}/{style.tarball}", "w:gz") as tar:
            for name, text in files.items():
                f = src / name
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(text)
                tar.add(f, arcname=name)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(emoji, "installed_styles_dir", lambda: tmp_path / "nothing-installed")


def test_an_iconify_style_is_fetched_once_and_only_its_icons_json_extracted(tmp_path, monkeypatch):
    st = SvgStyle("t", "Test", "@iconify-json/t@1.0.0", "iconify-json-t-1.0.0.tgz", "package/icons.json", "MIT")
    _npm_fake(tmp_path, monkeypatch, st, {"package/icons.json": json.dumps({"icons": {"cat-face": {"body": RED}}}),
                                          "package/index.js": "x"})
    cache = tmp_path / "cache"
    (cache / ".iconify-json-t-1.0.0.tmp" / "junk").mkdir(parents=True)  # left by a crashed extraction
    src = emoji.style_source(st, cache)
    assert src == cache / st.folder / "package" / "icons.json" and src.is_file()
    assert not (cache / st.folder / "package" / "index.js").exists() and not (cache / st.folder / "junk").exists()
    assert emoji.style_source(st, cache, download=False) == src  # found again without npm
    assert emoji.iconify_svgs(src, [_concept("1f431", "cat face")]).keys() == {"1f431"}


def test_a_broken_or_wrong_package_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import subprocess

    st = SvgStyle("t", "Test", "@iconify-json/t@1.0.0", "iconify-json-t-1.0.0.tgz", "package/icons.json", "MIT")
    cache = tmp_path / "cache"
    monkeypatch.setattr(emoji, "installed_styles_dir", lambda: tmp_path / "nothing-installed")
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: (cache / st.tarball).write_bytes(b"\x1f\x8b truncated"))
    with pytest.raises(InputError, match=r"(?s)expected a readable npm tarball .*run again"):
        emoji.style_source(st, cache)
    assert sorted(p.name for p in cache.iterdir()) == []  # neither the broken tarball nor a half folder stays
    _npm_fake(tmp_path, monkeypatch, st, {"package/index.js": "x"})  # a package without the icons
    with pytest.raises(InputError, match="expected package/icons.json inside the npm package @iconify-json/t@1.0.0"):
        emoji.style_source(st, cache)
    assert not (cache / st.folder).exists() and not (cache / f".{st.folder}.tmp").exists()


def test_unknown_and_missing_styles_say_what_was_expected(tmp_path, monkeypatch):
    monkeypatch.setattr(emoji, "installed_styles_dir", lambda: tmp_path / "nothing-installed")
    with pytest.raises(InputError, match="unknown emoji style 'comic'; known: openmoji, fluent, emojione"):
        emoji.style_source("comic", tmp_path)
    with pytest.raises(InputError, match="expected the npm package @iconify-json/emojione@"):
        emoji.style_source("emojione", tmp_path, download=False)
