"""Where the packaged encoders run: ONNX Runtime agrees with torch on real images and texts; the
exported model is cached by content, checked by its hash and exported again when corrupt or stale;
the runtime is chosen and refused with clear errors; decoding runs a batch ahead without changing
anything."""

import json
import logging

import numpy as np
import pytest

from retrieval.encoders import load_encoder
from retrieval.encoders import runtime as rt
from retrieval.encoders.base import ImageEncoder, _one_ahead
from retrieval.errors import InputError

from .conftest import write_tiny_bert

TEXTS = ["an emoji of a red apple", "dog", "a rocket flying to the moon over a city at night, drawn in flat colours",
         "two", "the sound of rain on a tin roof", "a smiling face with heart-shaped eyes"]


@pytest.fixture(scope="module")
def real_images(tmp_path_factory):
    from retrieval.datasets import emoji

    root = tmp_path_factory.mktemp("emoji-runtime")
    paths = emoji.prepare(root, limit=24, show_progress_bar=False)
    import pyarrow.parquet as pq

    return [r["image"] for r in pq.read_table(paths["corpus"]).to_pylist()][:20]


def cosines(a, b):
    return np.sum(a * b, axis=1)  # rows are unit length


@pytest.mark.slow
@pytest.mark.parametrize("spec,runtime", [("efficientnet-lite0-multi", "onnx"), ("efficientnet-lite2", "onnx"),
                                          ("efficientnet-lite0-multi", "openvino")])
def test_exported_images_agree_with_torch(spec, runtime, real_images):
    onnx, torch_ = load_encoder(spec, "image", runtime=runtime), load_encoder(spec, "image", runtime="torch")
    assert (onnx.runtime, torch_.runtime) == (runtime, "torch")
    a, la = onnx.encode_labelled(real_images, batch_size=8)
    b, lb = torch_.encode_labelled(real_images, batch_size=8)
    assert cosines(a, b).min() >= 0.9999
    np.testing.assert_allclose(la, lb, atol=1e-3)  # the label bridge's logits, from the same graph
    assert (np.argmax(la, 1) == np.argmax(lb, 1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_exported_text_agrees_with_torch_at_every_length(runtime):
    onnx, torch_ = load_encoder("minilm", "text", runtime=runtime), load_encoder("minilm", "text", runtime="torch")
    assert onnx.runtime == runtime  # openvino: in bfloat16 where the CPU has bfloat16 units
    for batch in (TEXTS, TEXTS[:1], [TEXTS[2] * 30]):  # mixed lengths, one text, one cut at max_length
        assert cosines(onnx.encode(batch, batch_size=4), torch_.encode(batch, batch_size=4)).min() >= 0.9999


def test_auto_runs_the_measured_order_on_the_cpu_and_torch_elsewhere(monkeypatch):
    monkeypatch.delenv("RETRIEVAL_RUNTIME", raising=False)
    assert rt.choose_runtime(None, "cpu") == "onnx"
    assert rt.choose_runtime(None, "cpu", ("openvino", "onnx")) == "openvino"
    assert load_encoder("minilm", "text").runtime == "openvino"  # what auto measured fastest for each
    assert load_encoder("efficientnet-lite0", "image").runtime == "onnx"
    assert rt.choose_runtime("auto", "cuda") == "torch"
    assert rt.choose_runtime("torch", "cpu") == "torch"
    monkeypatch.setenv("RETRIEVAL_RUNTIME", "torch")
    assert rt.choose_runtime(None, "cpu") == "torch" and rt.choose_runtime("onnx", "cpu") == "onnx"


def test_runtime_errors_name_what_is_wrong(monkeypatch):
    with pytest.raises(InputError, match="expected runtime to be one of auto, torch, onnx, openvino, got 'tensorrt'"):
        load_encoder("minilm", "text", runtime="tensorrt")
    monkeypatch.setenv("RETRIEVAL_RUNTIME", "fast")
    with pytest.raises(InputError, match=r"expected \$RETRIEVAL_RUNTIME to be one of .*got 'fast'"):
        rt.choose_runtime(None, "cpu")
    monkeypatch.delenv("RETRIEVAL_RUNTIME")
    with pytest.raises(InputError, match="the onnx runtime runs the packaged encoders on the CPU, got device 'cuda'"):
        rt.choose_runtime("onnx", "cuda")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(InputError, match="needs the PyPI package onnxruntime: pip install onnxruntime onnx"):
        rt.choose_runtime("onnx", "cpu")
    assert rt.choose_runtime("auto", "cpu") == "openvino"  # auto takes the next one installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(InputError, match="the openvino runtime needs the PyPI package onnx: pip install openvino onnx"):
        rt.choose_runtime("openvino", "cpu")
    assert rt.choose_runtime("auto", "cpu") == "torch"  # and torch when none is


@pytest.fixture
def tiny_bert(tmp_path):
    write_tiny_bert(tmp_path)
    return f"hf:{tmp_path}"


def test_exports_are_cached_checked_and_made_again_when_corrupt(tiny_bert, tmp_path, monkeypatch, caplog):
    import torch

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    calls = []
    real_export = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (calls.append(1), real_export(*a, **k))[1])
    texts = ["a red apple", "the dog", "a green pear and a red apple"]
    want = load_encoder(tiny_bert, "text", runtime="torch").encode(texts)
    first = load_encoder(tiny_bert, "text", runtime="onnx")
    assert calls == [1] and cosines(first.encode(texts), want).min() >= 0.9999
    (model,) = (tmp_path / "cache" / "onnx").glob("*.onnx")
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["bytes"] == model.stat().st_size and len(record["sha256"]) == 64
    load_encoder(tiny_bert, "text", runtime="onnx")
    assert calls == [1]  # the cached export, checked by its hash
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    model.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="retrieval.encoders"):
        again = load_encoder(tiny_bert, "text", runtime="onnx")
    assert calls == [1, 1] and "does not match its record" in caplog.text
    assert cosines(again.encode(texts), want).min() >= 0.9999
    model.with_suffix(".json").unlink()  # a crash between the file and its record: exported again
    load_encoder(tiny_bert, "text", runtime="onnx")
    assert len(calls) == 3 and not list((tmp_path / "cache" / "onnx").glob(".*tmp"))  # no scratch left


def test_a_failed_export_falls_back_under_auto_and_is_an_error_when_asked_for(tiny_bert, tmp_path, monkeypatch,
                                                                                caplog):
    import torch

    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))

    def broken(*a, **k):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with caplog.at_level(logging.WARNING, logger="retrieval.encoders"):
        enc = load_encoder(tiny_bert, "text", runtime="auto")
    assert enc.runtime == "torch" and "stays on torch" in caplog.text and enc.encode(["a dog"]).shape == (1, 16)
    with pytest.raises(InputError, match="could not run .* on onnx .*unsupported operator.*--runtime torch"):
        load_encoder(tiny_bert, "text", runtime="onnx")
    assert not list((tmp_path / "cache" / "onnx").glob("*"))  # nothing half-written


def test_the_cli_flag_sets_the_runtime_for_its_command_only(monkeypatch, tmp_path, capsys):
    import importlib

    cli = importlib.import_module("retrieval.cli.main")  # the package re-exports main(), which hides the module

    seen = []
    monkeypatch.delenv("RETRIEVAL_RUNTIME", raising=False)
    parser = cli.parser()
    args = parser.parse_args(["search", "nowhere", "a query", "--runtime", "torch"])
    assert args.runtime == "torch"
    with pytest.raises(SystemExit):
        parser.parse_args(["search", "nowhere", "q", "--runtime", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err
    monkeypatch.setattr(args, "func", lambda a: seen.append(rt.requested_runtime()) or 0, raising=False)
    monkeypatch.setattr(cli, "parse_args", lambda argv: args)
    assert cli.main([]) == 0 and seen == ["torch"]
    assert rt.requested_runtime() == "auto"  # the environment as it was


class Decoding(ImageEncoder):
    """Records which thread decoded each batch, and fails on a chosen input."""

    dim, name = 2, "decoding"

    def __init__(self):
        self.decoded_by = []

    def _prepare(self, batch):
        import threading

        if "bad" in batch:
            raise InputError("cannot decode 'bad'")
        self.decoded_by.append(threading.current_thread().name)
        return np.array([[float(x), 1.0] for x in batch], np.float32)

    def _encode_batch(self, prepared):
        assert isinstance(prepared, np.ndarray)
        return prepared


def test_decoding_runs_a_batch_ahead_in_a_worker_and_changes_nothing():
    enc = Decoding()
    items = [str(i) for i in range(1, 11)]
    out = enc.encode(items, batch_size=3, show_progress_bar=False)
    want = np.array([[i, 1.0] for i in range(1, 11)]) / np.sqrt(np.arange(1, 11) ** 2 + 1)[:, None]
    np.testing.assert_allclose(out, want, rtol=1e-6)
    assert len(enc.decoded_by) == 4 and all(n.startswith("decode") for n in enc.decoded_by)
    with pytest.raises(InputError, match="cannot decode 'bad'"):
        enc.encode(["1", "2", "3", "bad", "5"], batch_size=2)
    assert list(_one_ahead(iter([]))) == [] and list(_one_ahead(iter("abc"))) == ["a", "b", "c"]


@pytest.mark.slow
def test_exported_sound_network_agrees_with_torch():
    import glob

    files = sorted(glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga"))[:12]
    assert files, "scripts/setup.sh installs Debian's sound-theme-freedesktop"
    torch_ = load_encoder("aisfx", "audio", runtime="torch").encode(files, batch_size=4)
    assert load_encoder("aisfx", "audio").runtime == "openvino"  # auto: what measured fastest
    for runtime in ("onnx", "openvino"):
        enc = load_encoder("aisfx", "audio", runtime=runtime)
        assert enc.runtime == runtime and cosines(enc.encode(files, batch_size=4), torch_).min() >= 0.9999


def test_the_encoder_threads_setting_reaches_the_runtimes(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    texts = ["a red apple", "the dog"]
    monkeypatch.setenv("RETRIEVAL_ENCODER_THREADS", "1")
    onnx = load_encoder(tiny_bert, "text", runtime="onnx")
    assert onnx._onnx.session.get_session_options().intra_op_num_threads == 1
    pytest.importorskip("openvino")
    ov = load_encoder(tiny_bert, "text", runtime="openvino")
    assert ov._onnx.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert cosines(ov.encode(texts), onnx.encode(texts)).min() >= 0.999
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("RETRIEVAL_ENCODER_THREADS", bad)
        with pytest.raises(InputError, match=f"RETRIEVAL_ENCODER_THREADS to be a whole number >= 1, got '{bad}'"):
            rt.encoder_threads()
    monkeypatch.delenv("RETRIEVAL_ENCODER_THREADS")
    assert rt.encoder_threads() is None


def test_openvino_keeps_what_it_compiled_and_survives_a_damaged_blob(tiny_bert, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    texts = ["a red apple", "the dog"]
    first = load_encoder(tiny_bert, "text", runtime="openvino").encode(texts)
    blobs = list((tmp_path / "cache" / "openvino").glob("*.blob"))
    assert blobs, "OpenVINO kept no compiled blob beside the exports"
    np.testing.assert_array_equal(load_encoder(tiny_bert, "text", runtime="openvino").encode(texts), first)
    for blob in blobs:  # damaged: the encoder still loads (compiled again) and answers the same
        blob.chmod(0o600)
        blob.write_bytes(b"not a compiled model")
    np.testing.assert_allclose(load_encoder(tiny_bert, "text", runtime="openvino").encode(texts), first, atol=1e-6)


@pytest.mark.parametrize("flags, said", [(["--encoder-threads", "0"], "--encoder-threads to be at least 1, got 0"),
                                         (["--query-cache", "-1"], "--query-cache to be at least 0, got -1"),
                                         (["--batch-workers", "0"], "--batch-workers to be at least 1, got 0")])
def test_serve_refuses_bad_settings_before_it_starts(flags, said, capsys, tmp_path):
    from retrieval.cli import main

    assert main(["serve", str(tmp_path), *flags]) != 0
    assert said in capsys.readouterr().err


NO_TORCH = """
import json, sys
import numpy as np
from retrieval.encoders import load_encoder
specs, out = json.loads(sys.argv[1]), sys.argv[2]
vectors = {}
for spec, modality, inputs in specs:
    enc = load_encoder(spec, modality, runtime=sys.argv[3])
    vectors[spec] = enc.encode(inputs, batch_size=4)
np.savez(out, **vectors)
print(json.dumps({m: m in sys.modules for m in ("torch", "transformers")}))
"""


def encode_elsewhere(specs, runtime, tmp_path, env=None):
    """Each spec's vectors from a fresh process, and which of torch and transformers it imported."""
    import os
    import subprocess
    import sys

    out = tmp_path / "vectors.npz"
    done = subprocess.run([sys.executable, "-c", NO_TORCH, json.dumps(specs), str(out), runtime],
                          capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out)), json.loads(done.stdout.strip().splitlines()[-1])


def test_a_cached_export_of_a_model_folder_runs_without_torch_or_transformers(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    texts = ["a red apple", "the dog", "A Red APPLE and the green pear", "pear"]
    made = load_encoder(tiny_bert, "text", runtime="onnx")  # exports, checks the tokenizer, keeps both
    (record,) = (tmp_path / "cache" / "onnx").glob("*.json")
    assert json.loads(record.read_text())["info"]["raw_tokenizer"]["pad_token"] == "[PAD]"
    vectors, imported = encode_elsewhere([[tiny_bert, "text", texts]], "onnx", tmp_path)
    assert imported == {"torch": False, "transformers": False}
    np.testing.assert_allclose(vectors[tiny_bert], made.encode(texts, batch_size=4), atol=1e-6)
    torch_ = load_encoder(tiny_bert, "text", runtime="torch").encode(texts, batch_size=4)
    assert cosines(vectors[tiny_bert], torch_).min() >= 0.9999


def test_a_tokenizer_file_that_disagrees_with_transformers_is_not_used(tiny_bert, tmp_path, monkeypatch):
    """transformers rebuilds a BERT tokenizer's normaliser from tokenizer_config.json's do_lower_case, so
    the raw tokenizer.json (lowercasing) and transformers' tokenizer (not) differ on cased text."""
    folder = tmp_path / "cased"
    import shutil

    shutil.copytree(tiny_bert[3:], folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps(dict(config, do_lower_case=False)))
    spec = f"hf:{folder}"
    monkeypatch.setenv("RETRIEVAL_CACHE", str(tmp_path / "cache"))
    load_encoder(spec, "text", runtime="onnx")
    (record,) = (tmp_path / "cache" / "onnx").glob("*.json")
    assert json.loads(record.read_text())["info"]["raw_tokenizer"] is None
    texts = ["A Red APPLE", "a red apple"]
    vectors, imported = encode_elsewhere([[spec, "text", texts]], "onnx", tmp_path)
    assert imported["transformers"]  # transformers' own tokenizer
    torch_ = load_encoder(spec, "text", runtime="torch").encode(texts)
    assert cosines(vectors[spec], torch_).min() >= 0.9999 and cosines(vectors[spec][:1], vectors[spec][1:])[0] < 0.999


@pytest.mark.slow
def test_the_packaged_encoders_cached_exports_load_without_torch(real_images):
    import glob

    specs = [["minilm", "text", TEXTS], ["efficientnet-lite0-multi", "image", real_images[:6]]]
    sounds = sorted(glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga"))[:3]
    if sounds and rt.missing_package("openvino") is None:
        specs.append(["aisfx", "audio", sounds])
    here = {spec: load_encoder(spec, modality).encode(inputs, batch_size=4) for spec, modality, inputs in specs}
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        vectors, imported = encode_elsewhere(specs, "auto", Path(tmp))
    assert imported == {"torch": False, "transformers": False}
    for spec, _, _ in specs:
        np.testing.assert_allclose(vectors[spec], here[spec], atol=1e-5)


@pytest.mark.slow
def test_the_torch_network_is_still_there_when_asked_for():
    """A cached export runs without the torch network; code that reads ``enc.model`` gets it loaded."""
    load_encoder("efficientnet-lite0-multi", "image", runtime="onnx")  # exported now, if it was not cached
    enc = load_encoder("efficientnet-lite0-multi", "image", runtime="onnx")
    assert enc._model is None
    assert type(enc.model).__name__ == "EfficientNet" and enc._stage_end == enc._onnx.info["stage"][0]
