"""General MIDI sounds (retrieval/datasets/instruments.py) and the text <-> audio protocol the sound
suites share (retrieval/evaluation/suites/sounds.py: text_audio)."""

import struct
from pathlib import Path

import numpy as np
import pytest

from retrieval.datasets import instruments as gm
from retrieval.errors import InputError

SOUNDFONTS = [Path("/usr/share/sounds/sf2") / n for n in ("default-GM.sf2", "TimGM6mb.sf2", "FluidR3_GM.sf2")]


def test_names_are_the_standards_words():
    assert gm.words_of("Acoustic Guitar (nylon)") == "acoustic guitar nylon"
    assert gm.words_of("Electric Piano 2") == gm.words_of("Electric Piano 1") == "electric piano"
    assert gm.words_of("Low-Mid Tom") == "low mid tom"
    assert gm.words_of("FX 8 (sci-fi)") == "fx sci fi"


def test_every_named_sound_has_one_clip():
    items = gm.clips()
    assert len(items) == 128 + 47 and len({stem for stem, *_ in items}) == len(items)
    cats = [c for *_, c, _ in items]
    assert (cats.count("instrument"), cats.count("sound effect"), cats.count("percussion")) == (120, 8, 47)
    assert items[0][1] == "Acoustic Grand Piano" and items[127][1] == "Gunshot" and items[-1][1] == "Open Triangle"


def _track(data: bytes):
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, gm.TICKS)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    assert length == len(data) - 22
    return data[22:]


def test_midi_files_are_well_formed():
    assert gm._varlen(0) == b"\x00" and gm._varlen(127) == b"\x7f"
    assert gm._varlen(128) == b"\x81\x00" and gm._varlen(480) == b"\x83\x60"
    track = _track(gm.program_clip(40))   # violin: program change, then four notes on and off
    assert track[:3] == b"\x00\xc0\x28" and track.count(b"\x90") == 4 and track.endswith(b"\xff\x2f\x00")
    effect = _track(gm.program_clip(125))  # helicopter: one held note, five beats
    assert effect.count(b"\x90") == 1 and gm._varlen(5 * gm.TICKS) + b"\x80\x3c\x00" in effect
    drum = _track(gm.drum_clip(56))        # cowbell, channel 10, four hits
    assert drum.count(bytes([0x99, 56])) == 4


def test_out_of_range_numbers_are_refused_with_the_range():
    with pytest.raises(InputError, match=r"0\.\.127, got 128"):
        gm.program_clip(128)
    with pytest.raises(InputError, match=r"35\.\.81, got 34"):
        gm.drum_clip(34)


def test_missing_soundfont_or_program_names_the_packages(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="fluid-soundfont-gm"):
        gm.render(tmp_path, tmp_path / "none.sf2")
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00sfbk")
    monkeypatch.setattr(gm.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get install fluidsynth"):
        gm.render(tmp_path / "out", fake)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_file_that_is_no_soundfont_is_refused_before_rendering(tmp_path):
    fake = tmp_path / "broken.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    with pytest.raises(InputError, match="expected a SoundFont 2 file"):
        gm.render(tmp_path / "out", fake)
    assert not (tmp_path / "out").exists()


def test_a_failed_render_leaves_nothing_behind(tmp_path, monkeypatch):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00sfbk")
    monkeypatch.setattr(gm.shutil, "which", lambda name: "/bin/false")  # a "fluidsynth" that fails
    with pytest.raises(InputError, match="could not render program000"):
        gm.render(tmp_path / "out", fake)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_silent_instrument_is_played_lower_and_silence_everywhere_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00sfbk")
    monkeypatch.setattr(gm.shutil, "which", lambda name: "/usr/bin/fluidsynth")
    monkeypatch.setattr(gm, "clips", lambda: [("program043", "Contrabass", "instrument", gm.program_clip(43)),
                                              ("drum056", "Cowbell", "percussion", gm.drum_clip(56))])
    played = []

    def silent_until_an_octave_down(exe, soundfont, folder, stem, data):
        played.append((stem, data))
        (folder / f"{stem}.flac").write_bytes(b"")
        return data != gm.program_clip(43)

    monkeypatch.setattr(gm, "_render_one", silent_until_an_octave_down)
    assert [s.words for s in gm.render(tmp_path / "out", fake)] == ["contrabass", "cowbell"]
    assert played == [("program043", gm.program_clip(43)), ("program043", gm.program_clip(43, -1)),
                      ("drum056", gm.drum_clip(56))]
    assert gm.lower_clips("drum056") == gm.lower_clips("program125") == []  # drums and sound effects keep their pitch

    monkeypatch.setattr(gm, "_render_one", lambda *a: False)
    with pytest.raises(InputError, match="rendered program043 through .* as silence, at every pitch tried"):
        gm.render(tmp_path / "again", fake)
    assert list((tmp_path / "again").iterdir()) == []


def test_rendered_clips_are_sound_and_rendered_once(tmp_path, monkeypatch):
    sf2 = next((p for p in SOUNDFONTS if p.is_file()), None)
    if sf2 is None or gm.shutil.which("fluidsynth") is None:
        pytest.skip("needs fluidsynth and a General MIDI soundfont (scripts/setup.sh installs both)")
    import soundfile

    few = [("program040", "Violin", "instrument", gm.program_clip(40)),
           ("program043", "Contrabass", "instrument", gm.program_clip(43)),  # Fluid R3's stops below C4
           ("program125", "Helicopter", "sound effect", gm.program_clip(125)),
           ("drum056", "Cowbell", "percussion", gm.drum_clip(56))]
    monkeypatch.setattr(gm, "clips", lambda: few)
    sounds = gm.render(tmp_path, sf2, show_progress_bar=False)
    assert [s.words for s in sounds] == ["violin", "contrabass", "helicopter", "cowbell"]
    for s in sounds:
        audio, rate = soundfile.read(s.path)
        assert rate == 44100 and len(audio) > 2 * rate and np.abs(audio).max() > 1e-3
    assert not list(Path(sounds[0].path).parent.glob("*.mid"))

    def no_second_render(*a, **k):
        raise AssertionError("rendered again")
    monkeypatch.setattr(gm.subprocess, "run", no_second_render)
    assert gm.render(tmp_path, sf2) == sounds


def test_text_audio_protocol_on_planted_pairs():
    """Audio = a fixed rotation of the caption vectors plus noise: every route finds the pairs far
    above chance, and each query's averaged R@10 term averages to the table's R@10."""
    from retrieval.evaluation.data import SoundData
    from retrieval.evaluation.report import Report
    from retrieval.evaluation.suites.sounds import SPLITS, text_audio

    rng = np.random.default_rng(0)
    n, d = 120, 24
    words = np.array([f"sound {i}" for i in range(n)])
    words[1] = words[0]  # twins, as Dog1 and Dog2
    t = rng.normal(size=(n, d))
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a = t @ rot + 0.3 * rng.normal(size=(n, d))
    snd = SoundData(words, words, a, t, "the sound of {}", np.array(["test"] * n), np.array(["test"] * n))
    out = text_audio(Report("t", "t", "t", {}), snd, salt="planted:")
    assert out["queries"] == n and set(out["routes"]) == {"text -> audio", "audio -> text"}
    for label, table in out["tables"].items():
        r10 = {r["method"]: r["R@10"] for r in table}
        chance = r10["chance"]
        assert all(out["routes"][label][route] > chance + 0.4 for route in ("relative", "translation", "fusion"))
        plain = next(v for m, v in r10.items() if m.startswith("plain ASIF"))
        h = out["hits"][label]["plain"]
        assert h.shape == (n,) and np.allclose(h * SPLITS, np.round(h * SPLITS))
        assert abs(h.mean() - plain) < 1e-9
        per_split = out["per split"][label]
        assert len(per_split["plain"]) == SPLITS and abs(np.mean(per_split["plain"]) - plain) < 1e-9
        assert abs(np.mean(per_split["fusion"]) - out["routes"][label]["fusion"]) < 1e-9
