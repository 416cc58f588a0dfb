"""Shared fixtures: tiny real-looking data on disk and cheap deterministic encoders.

The fake encoders are registered in the encoder registry for the duration of a test, so the whole
build / open / search path runs exactly as with real models, in milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import tempfile  # noqa: E402

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a test must never reach for the hub
# Tests get their own anchor cache: never read or fill the user's ~/.cache/retrieval.
os.environ["RETRIEVAL_CACHE"] = tempfile.mkdtemp(prefix="retrieval-test-cache-")
# No default background bank (retrieval/build/background.py): the fake encoders would encode every
# emoji in each session, and the tests' expected rankings are those of the anchors alone. The bank
# has tests of its own (tests/test_background.py), which pass it explicitly.
os.environ["RETRIEVAL_BACKGROUND"] = "none"

from retrieval.encoders import registry  # noqa: E402
from retrieval.encoders.base import AudioEncoder, ImageEncoder, TextEncoder  # noqa: E402
from retrieval.media.images import load_rgb  # noqa: E402

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30),
           "purple": (140, 40, 160), "orange": (240, 140, 20), "black": (10, 10, 10), "grey": (128, 128, 128)}


class FakeImageEncoder(ImageEncoder):
    """Colour histogram of the non-white pixels: images of the same colour land close together."""

    dim = 24

    def __init__(self, name="fake-image", device="cpu"):
        self.name, self.device, self.calls = name, device, 0

    def _encode_batch(self, batch):
        self.calls += len(batch)
        out = []
        for x in batch:
            a = np.asarray(load_rgb(x).resize((16, 16)), np.float32).reshape(-1, 3)
            a = a[a.min(1) < 240]  # ignore the white background, as a real encoder mostly would
            hist = [np.histogram(a[:, c], bins=8, range=(0, 256))[0] for c in range(3)]
            out.append(np.concatenate(hist).astype(np.float32) + 0.01)
        return np.stack(out)


class FakeLabelledImageEncoder(FakeImageEncoder):
    """The colour histogram, plus a 'classifier head' over colour names: logits from the distance of
    the image's mean ink colour to each named colour (the label bridge's shape, in milliseconds)."""

    label_names = [f"{c} thing" for c in COLOURS]

    def __init__(self, name="fake-labelled-image", device="cpu"):
        super().__init__(name, device)

    def _encode_batch_labelled(self, batch):
        logits = []
        for x in batch:
            a = np.asarray(load_rgb(x).resize((16, 16)), np.float32).reshape(-1, 3)
            ink = a[a.min(1) < 240].mean(0) if (a.min(1) < 240).any() else a.mean(0)
            logits.append([-np.linalg.norm(ink - np.array(rgb)) / 20.0 for rgb in COLOURS.values()])
        return self._encode_batch(batch), np.array(logits, np.float32)


class FakeTextEncoder(TextEncoder):
    """Hashed bag of words: texts sharing words land close together."""

    dim = 32

    def __init__(self, name="fake-text", device="cpu"):
        self.name, self.device, self.calls = name, device, 0

    def _encode_batch(self, batch):
        self.calls += len(batch)
        out = np.full((len(batch), self.dim), 0.01, np.float32)
        for i, t in enumerate(batch):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out


class FakeAudioEncoder(AudioEncoder):
    """Spectrum of the first 0.25 s in 100 Hz bins: tones of the same pitch land close together."""

    dim = 40

    def __init__(self, name="fake-audio", device="cpu"):
        self.name, self.device, self.calls = name, device, 0

    def _encode_batch(self, batch):
        import wave

        self.calls += len(batch)
        out = []
        for path in batch:
            with wave.open(str(path)) as w:
                rate, y = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)
            spec = np.abs(np.fft.rfft(y[: rate // 4], n=rate // 4))
            freqs = np.fft.rfftfreq(rate // 4, 1 / rate)
            out.append(np.histogram(freqs, bins=self.dim, range=(0, 4000), weights=spec)[0] + 0.01)
        return np.stack(out)


def tone(path, hz, seconds=0.5, rate=8000, amplitude=0.5):
    """A sine tone as 16-bit mono WAV (standard library only)."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    y = (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(y.tobytes())
    return str(path)


PITCH = {c: 200 * (i + 1) for i, c in enumerate(COLOURS)}  # one pitch per colour, 200..1600 Hz


@pytest.fixture
def fake_encoders(monkeypatch):
    made = {}

    def factory(cls):
        def make(arg, *, name, device, modality):
            made[name] = cls(name=name, device=device)
            return made[name]
        return make

    reg = dict(registry.REGISTRY)
    reg["fake-image"] = registry.Backend(("image",), False, True, "test colour histogram", factory(FakeImageEncoder))
    reg["fake-text"] = registry.Backend(("text",), False, True, "test bag of words", factory(FakeTextEncoder))
    reg["fake-audio"] = registry.Backend(("audio",), False, True, "test tone spectrum", factory(FakeAudioEncoder))
    reg["fake-labelled-image"] = registry.Backend(("image",), False, True, "test colour histogram + colour names",
                                                  factory(FakeLabelledImageEncoder))
    monkeypatch.setattr(registry, "REGISTRY", reg)
    return made


def solid(path, colour, size=32, shape=True):
    img = Image.new("RGB", (size, size), (255, 255, 255))
    if shape:
        img.paste(Image.new("RGB", (size - 8, size - 8), COLOURS[colour]), (4, 4))
    img.save(path)
    return str(path)


@pytest.fixture
def tiny_data(tmp_path):
    """Anchors: one square per colour, captioned; corpus: other squares of those colours (different size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "anchors").mkdir()
    (tmp_path / "corpus").mkdir()
    names = list(COLOURS)
    anchors = [solid(tmp_path / "anchors" / f"{c}.png", c, size=40) for c in names]
    pq.write_table(pa.table({"image": [f"anchors/{c}.png" for c in names],
                             "caption": [f"a {c} square" for c in names]}), tmp_path / "anchors.parquet")
    corpus = []
    for c in names:
        p = solid(tmp_path / "corpus" / f"{c}.png", c, size=24)
        (tmp_path / "corpus" / f"{c}.txt").write_text(f"{c} box", encoding="utf-8")
        corpus.append(p)
    return {"root": tmp_path, "anchors": str(tmp_path / "anchors.parquet"), "corpus": str(tmp_path / "corpus"),
            "colours": names, "anchor_images": anchors, "corpus_images": corpus}


@pytest.fixture
def tiny_collection(tiny_data, fake_encoders, tmp_path):
    from retrieval import build_collection

    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", image_encoder="fake-image",
                           text_encoder="fake-text", k=3, p=2.0, cache_dir=str(tmp_path / "cache"))
    return out


@pytest.fixture
def tone_data(tmp_path):
    """Sound anchors: one tone per colour captioned "a red noise"; sound queries: the same pitches,
    longer and quieter, captioned "red beep"."""
    (tmp_path / "sound-anchors").mkdir()
    (tmp_path / "sounds").mkdir()
    for c, hz in PITCH.items():
        tone(tmp_path / "sound-anchors" / f"{c}.wav", hz, seconds=0.4)
        (tmp_path / "sound-anchors" / f"{c}.txt").write_text(f"a {c} noise", encoding="utf-8")
        tone(tmp_path / "sounds" / f"{c}.wav", hz, seconds=0.6, amplitude=0.3)
        (tmp_path / "sounds" / f"{c}.txt").write_text(f"{c} beep", encoding="utf-8")
    return {"anchors": str(tmp_path / "sound-anchors"), "corpus": str(tmp_path / "sounds"), "pitch": PITCH}


@pytest.fixture
def bank_table(tiny_data):
    """A bank of another 'domain': larger tiles of the same colours, captioned otherwise."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tiny_data["root"] / "bank"
    root.mkdir()
    names = tiny_data["colours"]
    for c in names:
        solid(root / f"{c}.png", c, size=48)
    pq.write_table(pa.table({"image": [f"bank/{c}.png" for c in names], "caption": [f"{c} paint" for c in names]}),
                   tiny_data["root"] / "bank.parquet")
    return str(tiny_data["root"] / "bank.parquet")


def as_older_format(folder, dest, version: int):
    """A copy of a collection whose manifest says it was written by format ``version`` (its checksum
    made again, as that version's writer would have): for "older collections still open" tests."""
    import json
    import shutil

    from retrieval.store.format import manifest_checksum

    old = shutil.copytree(folder, dest)
    m = json.loads((old / "manifest.json").read_text())
    m["format_version"] = version
    m["manifest_sha256"] = manifest_checksum(m)
    (old / "manifest.json").write_text(json.dumps(m))
    return old


def flat(manifest) -> dict:
    """A manifest's projector in the flat form (kind, k, p, center, whiten, background ...), whatever
    its format: format 7 stores steps (retrieval/store/projectors.py)."""
    from retrieval.store.projectors import summary

    return summary(manifest)


TINY_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "apple", "green", "pear", "dog", "the"]


def write_tiny_bert(folder) -> None:
    """A randomly initialised one-layer BERT and a lowercasing word-piece tokenizer over TINY_WORDS,
    saved as a model folder. The tokenizer is built with the tokenizers library and handed to
    transformers: given only a vocab.txt, transformers 5 writes a tokenizer.json without the words."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    raw = Tokenizer(WordPiece({w: i for i, w in enumerate(TINY_WORDS)}, unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    BertTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                      cls_token="[CLS]", mask_token="[MASK]").save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(TINY_WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
