"""A model file in (onnx:PATH for images, texts and sounds), plug-ins by entry point, and the public
conformance check that both (and every built-in encoder) pass. The ONNX graphs are built here, so
each expected vector is computed independently of the encoder's code."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from retrieval import Collection, build_collection  # noqa: E402
from retrieval.encoders import load_encoder  # noqa: E402
from retrieval.encoders.base import TextEncoder  # noqa: E402
from retrieval.encoders.conformance import ConformanceError, check_encoder  # noqa: E402
from retrieval.errors import InputError, UnknownNameError  # noqa: E402

W = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
EMB = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
VOCAB = {"[PAD]": 0, "[UNK]": 1, "red": 2, "green": 3, "blue": 4, "thing": 5}


def save(graph, path, metadata=None):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return str(path)


def image_model(path, metadata=None):
    """A 1x1 convolution of 8 filters over 16x16 pixels: features (n, 8, 16, 16), pooled by the encoder."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["pixels", "w"], ["features"])], "img",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 8, 16, 16])],
        [numpy_helper.from_array(W[:, :, None, None], "w")])
    return save(graph, path, metadata)


def text_model(folder):
    """Token embeddings (n, tokens, 5) of a word-level vocabulary, with its tokenizer.json beside them."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "input_ids"], ["tokens"])], "txt",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["n", "t"])],
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["n", "t", 5])],
        [numpy_helper.from_array(EMB, "emb")])
    return save(graph, folder / "text.onnx")


def audio_model(path):
    """(mean, max, min) of the waveform, each plus one."""
    one = numpy_helper.from_array(np.ones((1, 1), np.float32), "one")
    nodes = [helper.make_node(op, ["wave"], [op], axes=[1], keepdims=1) for op in ("ReduceMean", "ReduceMax", "ReduceMin")]
    nodes += [helper.make_node("Concat", ["ReduceMean", "ReduceMax", "ReduceMin"], ["stats"], axis=1),
              helper.make_node("Add", ["stats", "one"], ["out"])]
    graph = helper.make_graph(nodes, "snd", [helper.make_tensor_value_info("wave", TensorProto.FLOAT, [1, "t"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])], [one])
    return save(graph, path)


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


COLOURS = [(220, 30, 30), (30, 200, 60), (40, 40, 210)]


def plain(folder):
    """One picture a colour, of several sizes and shapes: resizing and cropping keep its colour."""
    from PIL import Image

    paths = []
    for i, c in enumerate(COLOURS):
        paths.append(str(folder / f"plain{i}.png"))
        Image.new("RGB", (20 + 9 * i, 31 - 4 * i), c).save(paths[-1])
    return paths


def test_an_image_model_with_its_settings_in_metadata_and_a_sidecar(tmp_path):
    path = image_model(tmp_path / "img.onnx", {"retrieval": json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3})})
    enc = load_encoder(f"onnx:{path}", "image")
    assert enc.dim == 8 and enc.name == f"onnx:{tmp_path / 'img.onnx'}"
    pngs = plain(tmp_path)
    want = unit([W @ ((np.float32(c) / 255 - 0.5) / 0.25) for c in COLOURS])
    np.testing.assert_allclose(enc.encode(pngs), want, atol=1e-5)
    (tmp_path / "img.json").write_text(json.dumps({"channels": "BGR"}))  # the sidecar adds to the metadata
    bgr = load_encoder(f"onnx:{path}", "image")
    np.testing.assert_allclose(bgr.encode(pngs), unit([W @ ((np.float32(c[::-1]) / 255 - 0.5) / 0.25) for c in COLOURS]),
                               atol=1e-5)
    check_encoder(bgr, pngs)
    with pytest.raises(ConformanceError, match="the encoder its name rebuilds gives other vectors"):
        check_encoder(enc, pngs)  # its settings changed since it was made: the check sees it


def test_a_text_model_with_its_tokenizer_beside_it(tmp_path):
    enc = load_encoder(f"onnx:{text_model(tmp_path)}", "text")
    texts = ["red thing", "blue", "green green thing zebra"]
    ids = [[VOCAB.get(w, 1) for w in t.split()] for t in texts]
    np.testing.assert_allclose(enc.encode(texts), unit([EMB[i].mean(0) for i in ids]), atol=1e-5)
    check_encoder(enc, texts)  # padding in a batch must not change a text's vector


def test_a_sound_model_fed_one_waveform_at_a_time(tone_data, tmp_path):
    from retrieval.media.audio import load_audio

    enc = load_encoder(f"onnx:{audio_model(tmp_path / 'snd.onnx')}", "audio")
    wavs = sorted(str(p) for p in Path(tone_data["corpus"]).glob("*.wav"))[:3]
    want = [[w.mean() + 1, w.max() + 1, w.min() + 1] for w in (load_audio(p, 16000) for p in wavs)]
    np.testing.assert_allclose(enc.encode(wavs), unit(want), atol=1e-5)
    check_encoder(enc, wavs)


def test_a_collection_built_with_an_onnx_image_model_answers_from_anywhere(tiny_data, fake_encoders, tmp_path,
                                                                          monkeypatch):
    path = image_model(tmp_path / "img.onnx")
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", image_encoder=f"onnx:{path}",
                           text_encoder="fake-text", cache_dir="", k=3, p=2.0, background="none", labels=False)
    monkeypatch.chdir(tiny_data["corpus"])
    col = Collection.open(out)
    assert col.manifest["encoders"]["image"]["spec"] == f"onnx:{tmp_path / 'img.onnx'}"
    hits = col.search(tiny_data["corpus_images"][0], k=1)
    assert hits[0].path == tiny_data["corpus_images"][0]


def test_a_model_file_replaced_under_the_same_path_is_noticed(tiny_data, fake_encoders, tmp_path):
    path = image_model(tmp_path / "img.onnx")
    out = build_collection(tiny_data["corpus"], tiny_data["anchors"], tmp_path / "col", image_encoder=f"onnx:{path}",
                           text_encoder="fake-text", cache_dir="", k=3, p=2.0, background="none", labels=False)
    built = Collection.open(out).manifest["encoders"]["image"]
    assert len(built["fingerprint"]) == 64
    assert Collection.open(out).search(tiny_data["corpus_images"][0], k=1)[0].path == tiny_data["corpus_images"][0]
    sidecar = Path(path).with_suffix(".json")
    sidecar.write_text(json.dumps({"channels": "BGR"}))  # other settings, same file, same width
    with pytest.raises(InputError, match=r"to be the model the collection was built with .* 'retrieval reencode'"):
        Collection.open(out).search(tiny_data["corpus_images"][0], k=1)
    sidecar.unlink()
    assert Collection.open(out).search(tiny_data["corpus_images"][0], k=1)[0].path == tiny_data["corpus_images"][0]


@pytest.mark.parametrize("settings, match", [
    ({"colour": "RGB"}, r"unknown \['colour'\]"),
    ({"layout": "CHW"}, "layout='CHW'"),
    ({"std": [0, 1, 1]}, "positive stds"),
    ({"output": 3}, "expected the output 3 among"),
])
def test_bad_settings_are_refused_with_what_is_known(tmp_path, settings, match):
    path = image_model(tmp_path / "img.onnx")
    (tmp_path / "img.json").write_text(json.dumps(settings))
    with pytest.raises(InputError, match=match):
        load_encoder(f"onnx:{path}", "image")


def test_a_missing_or_damaged_file_and_a_text_model_without_tokenizer_are_refused(tmp_path):
    with pytest.raises(InputError, match="expected an ONNX model file"):
        load_encoder(f"onnx:{tmp_path / 'none.onnx'}", "image")
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(InputError, match="ONNX Runtime can run"):
        load_encoder(f"onnx:{tmp_path / 'bad.onnx'}", "image")
    path = text_model(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(InputError, match="tokenizer.json"):
        load_encoder(f"onnx:{path}", "text")


class Counting(TextEncoder):
    """Deterministic letter counts: a plug-in's encoder."""

    def __init__(self, arg, *, name, device="cpu", modality="text", shift=0.0):
        self.name, self.device, self.dim, self.shift = name, device, 26, shift

    def _encode_batch(self, batch):
        out = np.full((len(batch), 26), 0.01, np.float32)
        for i, t in enumerate(batch):
            for ch in t.lower():
                if ch.isalpha() and ch.isascii():
                    out[i, ord(ch) - 97] += 1
        return out + self.shift * len(batch)  # shift: a vector that depends on its batch


def plugin(tmp_path, monkeypatch, value):
    """Install a distribution whose 'retrieval.encoders' entry point 'letters' names ``value``."""
    dist = tmp_path / "letters_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: letters-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[retrieval.encoders]\nletters = {value}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_plugin_registers_a_backend_by_entry_point(tmp_path, monkeypatch):
    from retrieval.encoders import registry

    (tmp_path / "letters_mod.py").write_text(
        "from retrieval.encoders import Backend\nfrom tests.test_onnx_file import Counting\n"
        "BACKEND = Backend(('text',), True, False, 'letter counts', lambda arg, **kw: Counting(arg, **kw))\n"
        "NOT_A_BACKEND = 42\n")
    plugin(tmp_path, monkeypatch, "letters_mod:BACKEND")
    enc = load_encoder("letters:abc", "text")
    assert isinstance(enc, Counting) and enc.name == "letters:abc"
    assert "letters (plug-in letters_mod:BACKEND)" in registry.describe()
    check_encoder(enc, ["a red apple", "a dog", "zebra"])
    with pytest.raises(InputError, match="encodes text, not image"):
        load_encoder("letters:abc", "image")
    with pytest.raises(UnknownNameError, match="letters"):  # the known names list the plug-in
        load_encoder("nothing:abc", "text")


def test_an_entry_point_that_is_not_a_backend_is_refused(tmp_path, monkeypatch):
    (tmp_path / "letters_bad.py").write_text("NOT_A_BACKEND = 42\n")
    plugin(tmp_path, monkeypatch, "letters_bad:NOT_A_BACKEND")
    with pytest.raises(InputError, match="to name a retrieval.encoders.Backend, got a int"):
        load_encoder("letters:abc", "text")


def test_the_conformance_check_catches_a_broken_encoder(fake_encoders):
    texts = ["a red apple", "a dog", "zebra"]
    check_encoder(Counting("x", name="letters:x"), texts, rebuild=False)
    with pytest.raises(ConformanceError, match="batches of one gives other vectors"):
        check_encoder(Counting("x", name="letters:x", shift=0.5), texts, rebuild=False)
    nameless = Counting("x", name="")
    with pytest.raises(ConformanceError, match="expected the spec that rebuilds it"):
        check_encoder(nameless, texts)
    with pytest.raises(ConformanceError, match="the encoder its name rebuilds"):
        check_encoder(load_encoder("fake-text", "text"), texts, atol=-1.0)  # nothing is within a negative tolerance


def test_the_built_in_fakes_conform(tiny_data, fake_encoders):
    check_encoder(load_encoder("fake-text", "text"), ["a red square", "a blue one"])
    check_encoder(load_encoder("fake-image", "image"), tiny_data["corpus_images"][:3])
