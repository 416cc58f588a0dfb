"""open_clip towers used as *separate* unimodal encoders: ``open_clip:ARCH@PRETRAINED``.

Using one tower of a joint model is legitimate here (e.g. a CLIP image tower against a MiniLM text
model); both towers of the same CLIP would not need this project at all.
"""

from __future__ import annotations

from typing import List

import numpy as np

from retrieval.encoders.base import ImageEncoder, TextEncoder
from retrieval.encoders.image import local_weights
from retrieval.errors import InputError
from retrieval.media.images import load_rgb


def _load(arch_at_tag: str, device: str):
    try:
        import open_clip
    except ImportError as exc:
        raise InputError("open_clip encoders need the open-clip-torch package (and torchvision); "
                         "pip install open-clip-torch") from exc
    arch, _, tag = arch_at_tag.partition("@")
    if arch not in open_clip.list_models():
        raise InputError(f"expected an open_clip architecture, got {arch!r}; known: {', '.join(open_clip.list_models())}")
    local_weights(tag)  # a file must be a .safetensors file that exists (never a pickle from elsewhere)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag or None, device=device)
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # most often: weights (or a tokenizer) that download and no network
        raise InputError(f"could not load open_clip {arch!r} with weights {tag or 'none (random)'!r}: "
                         f"{type(exc).__name__}: {exc}. Named weights download from the Hugging Face hub on first use "
                         f"(a network is needed once; they are cached), or give a local file: "
                         f"open_clip:{arch}@/path/to/weights.safetensors") from exc
    return open_clip, model.eval(), preprocess, tokenizer


def _embed_dim(model) -> int:
    proj = getattr(model, "text_projection", None)
    if proj is not None and hasattr(proj, "shape"):
        return int(proj.shape[-1])
    return int(model.visual.output_dim)


class OpenClipImageTower(ImageEncoder):
    def __init__(self, spec: str, *, name: str, device: str = "cpu"):
        import torch

        _, self.model, self.preprocess, _ = _load(spec, device)
        self.name, self.device, self.dim, self._torch = name, device, int(self.model.visual.output_dim), torch

    def _encode_batch(self, batch: List) -> np.ndarray:
        torch = self._torch
        x = torch.stack([self.preprocess(load_rgb(b)) for b in batch]).to(self.device)
        with torch.inference_mode():
            return self.model.encode_image(x).float().cpu().numpy()


class OpenClipTextTower(TextEncoder):
    def __init__(self, spec: str, *, name: str, device: str = "cpu"):
        import torch

        _, self.model, _, self.tokenizer = _load(spec, device)
        self.name, self.device, self.dim, self._torch = name, device, _embed_dim(self.model), torch

    def _encode_batch(self, batch: List[str]) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model.encode_text(self.tokenizer(batch).to(self.device)).float().cpu().numpy()
