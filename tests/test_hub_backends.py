"""The hub backends, timm and open_clip, on small randomly initialised models built here: the
encoder contract, preprocessing taken from each model's own config, weights from a local
safetensors file (what a user with downloaded weights gives), and build + search end to end
through the CLI. They need torchvision, which does not install beside the CPU torch wheel of the
main environment, so they are marked ``hub`` (deselected there by pyproject's addopts) and run in
the second environment: ``bash scripts/test_hub.sh`` (called by .ci/run)."""

import json

import numpy as np
import pytest
from PIL import Image

from retrieval.cli.main import main
from retrieval.encoders import load_encoder
from retrieval.errors import InputError

from .test_encoders import check_contract

pytestmark = pytest.mark.hub


@pytest.fixture(autouse=True)
def hub_modules():
    # imported here, not at the top: in the main environment this module is collected and its tests
    # deselected by the marker; an import at the top would fail (or skip) the whole module there
    global timm, open_clip, torch
    import open_clip
    import timm
    import torch

TINY_CLIP = {"embed_dim": 24,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def images(n=3):
    return [Image.new("RGB", (48 + 8 * i, 40), c) for i, c in enumerate(("red", "blue", "green", "yellow")[:n])]


@pytest.fixture
def timm_weights(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False)  # with its classifier, as a downloaded file has
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


def test_timm_takes_its_preprocessing_from_the_models_config(timm_weights):
    enc = load_encoder(f"timm:resnet10t@{timm_weights}", "image")
    cfg = timm.data.resolve_data_config({}, model=enc.model)
    # resnet10t's own config asks for 176 px (not the usual 224): the transform follows the model
    assert enc.dim == enc.model.num_features == 512 and cfg["input_size"] == (3, 176, 176)
    out = check_contract(enc, images(), "image")
    # by hand: the model's own eval transform (resize, crop, its mean and std), then the network
    x = torch.stack([timm.data.create_transform(**cfg)(im) for im in images()])
    with torch.inference_mode():
        want = enc.model(x).numpy()
    np.testing.assert_allclose(out, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    from safetensors.torch import load_file

    stored = load_file(timm_weights)
    assert all(torch.equal(v, stored[k]) for k, v in enc.model.state_dict().items())  # the file's weights


def test_open_clip_towers_with_the_models_own_preprocessing(tmp_path):
    (tmp_path / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "tiny-clip.json")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    img = load_encoder(f"open_clip:tiny-clip@{weights}", "image")
    txt = load_encoder(f"open_clip:tiny-clip@{weights}", "text")
    assert img.dim == txt.dim == 24
    out = check_contract(img, images(), "image")
    check_contract(txt, ["a red apple", "a dog", "a much longer caption about a green pear"], "text")
    _, _, preprocess = open_clip.create_model_and_transforms("tiny-clip", pretrained=None)
    x = torch.stack([preprocess(im) for im in images()])
    assert x.shape[-1] == TINY_CLIP["vision_cfg"]["image_size"]  # the model's resolution, not a fixed one
    with torch.inference_mode():
        model.load_state_dict(img.model.state_dict())
        want = model.encode_image(x).numpy()
    np.testing.assert_allclose(out, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)


def test_build_and_search_end_to_end_with_hub_encoders(tiny_data, timm_weights, tmp_path, capsys):
    (tmp_path / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(tmp_path / "tiny-clip.json")
    from safetensors.torch import save_file

    torch.manual_seed(1)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in open_clip.create_model("tiny-clip").state_dict().items()}, str(weights))
    out = tmp_path / "col"
    assert main(["build", "--corpus", tiny_data["corpus"], "--anchors", tiny_data["anchors"], "--out", str(out),
                 "--image-encoder", f"timm:resnet10t@{timm_weights}", "--text-encoder",
                 f"open_clip:tiny-clip@{weights}", "-k", "3", "--cache-dir", "", "--no-progress"]) == 0
    capsys.readouterr()
    query = tiny_data["corpus_images"][2]
    assert main(["search", str(out), "--image", query, "--target", "items", "-k", "1", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)["results"]["image"]
    assert hit["path"] == query  # the item itself: the same network encoded it at build and at query time
    assert main(["search", str(out), "a red square", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]["image"]) == 3


def test_hub_specs_refuse_pickles_and_missing_files_and_explain_offline_failures(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"not loaded")
    with pytest.raises(InputError, match="expected local weights as a .safetensors file, got .*w.pt"):
        load_encoder(f"timm:resnet10t@{tmp_path / 'w.pt'}", "image")
    with pytest.raises(InputError, match="expected a weights file at .*none.safetensors"):
        load_encoder(f"open_clip:RN50@{tmp_path / 'none.safetensors'}", "image")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="could not load open_clip 'ViT-B-32' with weights 'laion2b_s34b_b79k'.*"
                                         "download from the Hugging Face hub"):
        load_encoder("open_clip:ViT-B-32@laion2b_s34b_b79k", "image")
    with pytest.raises(InputError, match="could not load timm model 'resnet10t'.*Hugging Face hub"):
        load_encoder("timm:resnet10t", "image")
