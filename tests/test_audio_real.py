"""The packaged aiSFX audio encoder and real named sounds (Debian scratch / freedesktop), end to end."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retrieval.cli.main import main
from retrieval.errors import InputError

pytestmark = pytest.mark.slow
pytest.importorskip("librosa")
aisfx = pytest.importorskip("aisfx.inference")

from retrieval.datasets import sounds  # noqa: E402
from retrieval.encoders import load_encoder  # noqa: E402
from retrieval.encoders.audio import SAMPLE_RATE, aisfx_spectrogram  # noqa: E402

if not sounds.SCRATCH_DIR.is_dir() or not sounds.FREEDESKTOP_DIR.is_dir():
    pytest.skip("Debian packages scratch and sound-theme-freedesktop are not installed", allow_module_level=True)

SCRATCH = {s.name: s.path for s in sounds.find_sounds(("scratch",))}


@pytest.fixture(scope="module")
def enc():
    return load_encoder("aisfx", "audio")


@pytest.mark.parametrize("name", ["Dog1", "Cat", "bell"])  # wav, mp3, ogg vorbis
def test_our_spectrogram_is_aisfx_own(name):
    from aisfx.preprocessing import spectrogram_normalize
    from aisfx.spectrogram.spectrogram_librosa import compute_spectrogram

    from retrieval.media.audio import load_audio

    path = SCRATCH.get(name) or str(sounds.FREEDESKTOP_DIR / f"{name}.oga")
    ours = aisfx_spectrogram(load_audio(path, SAMPLE_RATE))
    theirs = spectrogram_normalize(compute_spectrogram(path, 44100.0, 2048, 1024, 96, 0.0, 22050.0).T, "original")
    assert ours.shape == theirs.shape and np.allclose(ours, theirs, atol=1e-5)


def test_encoding_is_deterministic_batch_independent_and_handles_short_clips(enc, tmp_path):
    import soundfile as sf

    short = tmp_path / "blip.wav"  # 20 ms: shorter than one FFT window and than one 2.3 s block
    sf.write(short, (0.5 * np.sin(2 * np.pi * 880 * np.arange(441) / 22050)).astype(np.float32), 22050)
    files = [SCRATCH["Dog1"], str(short), SCRATCH["Typing"]]
    batch = enc.encode(files, batch_size=3)
    alone = np.vstack([enc.encode([f]) for f in files])
    assert batch.shape == (3, 512) and np.all(np.isfinite(batch))
    assert np.allclose(np.linalg.norm(batch, axis=1), 1, atol=1e-5)
    assert np.allclose(batch, alone, atol=1e-5)
    # two recordings of a dog are closer to each other than to typing
    dog2 = enc.encode([SCRATCH["Dog2"]])[0]
    assert batch[0] @ dog2 > batch[2] @ dog2


def test_bad_sound_files_are_named(enc, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError, match=r"expected a readable sound file .*broken\.wav"):
        enc.encode([str(bad)])
    with pytest.raises(InputError, match=r"expected a sound file, got .*missing\.wav"):
        enc.encode([str(tmp_path / "missing.wav")])


def test_a_checkpoint_that_is_not_the_pinned_one_is_never_loaded(tmp_path):
    from retrieval.encoders import audio as audio_mod

    fake = tmp_path / "checkpoint.pth"
    fake.write_bytes(b"not the aisfx checkpoint")  # torch.load would fail on this with another error
    with pytest.raises(InputError, match=r"expected the aisfx 0\.1\.2 checkpoint .* reinstall aisfx==0\.1\.2"):
        audio_mod.load_aisfx_model("cpu", str(fake))


@pytest.fixture(scope="module")
def sound_collection(tmp_path_factory):
    """Freedesktop event sounds (one made unreadable) searched through scratch's named sounds."""
    root = tmp_path_factory.mktemp("sounds")
    corpus = root / "corpus"
    shutil.copytree(sounds.FREEDESKTOP_DIR, corpus)
    (corpus / "zz-broken.oga").write_bytes(b"OggS broken")
    anchors = sounds.write_table(sounds.find_sounds(("scratch",)), root / "scratch.csv")
    out = root / "col"
    assert main(["build", "--corpus", str(corpus), "--anchors", str(anchors), "--out", str(out),
                 "--cache-dir", str(root / "cache"), "--no-progress"]) == 0
    return {"out": str(out), "corpus": corpus}


def test_sound_collection_from_the_cli(sound_collection, capsys):
    capsys.readouterr()
    assert main(["info", sound_collection["out"], "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["modality"] == "audio" and info["counts"]["items"] == 35 and info["counts"]["skipped"] == 1
    assert info["skipped"][0]["path"].endswith("zz-broken.oga")
    # a sound finds itself (audio -> audio on raw embeddings), and texts through the anchors
    bell = str(sound_collection["corpus"] / "bell.oga")
    assert main(["search", sound_collection["out"], "--audio", bell, "-k", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert list(res) == ["audio", "text"] and Path(res["audio"][0]["path"]).name == "bell.oga"
    assert len(res["text"]) == 3 and all(h["kind"] == "text" for h in res["text"])
    assert main(["search", sound_collection["out"], "the sound of a bell", "-k", "35", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]["audio"]
    assert sorted(Path(h["path"]).name for h in hits) == sorted(p.name for p in sound_collection["corpus"].glob("*.oga")
                                                                 if p.name != "zz-broken.oga")


@pytest.fixture(scope="module")
def emoji_with_sounds(tmp_path_factory):
    from retrieval.datasets import emoji

    root = tmp_path_factory.mktemp("emoji-sounds")
    paths = emoji.prepare(root / "data", limit=150, names=["dog", "dog face", "trumpet", "rooster"],
                          show_progress_bar=False)
    pivots = sounds.prepare(root / "snd", exclude=["Dog1", "Trumpet1"])["sounds"]
    out = root / "col"
    assert main(["build", "--corpus", paths["corpus"], "--anchors", paths["anchors"], "--pivot-anchors", str(pivots),
                 "--out", str(out), "-k", "32", "--cache-dir", str(root / "cache"), "--no-progress"]) == 0
    return str(out)


def test_a_sound_finds_its_emoji_through_text(emoji_with_sounds, capsys):
    """Held-out recordings of a dog and a trumpet (their twins Dog2 and Trumpet2 are anchors: the
    seen regime of results/sounds) rank their emoji above most of the ~150 pictures."""
    from retrieval import Collection

    col = Collection.open(emoji_with_sounds)
    n = len(col.items["path"])
    for sound, targets in (("Dog1", {"dog", "dog face"}), ("Trumpet1", {"trumpet"})):
        hits = col.search(SCRATCH[sound], k=n)
        best = min(h.rank for h in hits if h.caption.replace("an emoji of ", "") in targets)
        assert best <= n // 10, (sound, best, [h.caption for h in hits[:10]])
    capsys.readouterr()
    assert main(["explain", emoji_with_sounds, "--audio", SCRATCH["Dog1"]]) == 0
    text = capsys.readouterr().out
    assert "route pivot" in text and "pivot into text (minilm)" in text
