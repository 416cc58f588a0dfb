"""Audio encoders: the packaged aiSFX sound-effects CNN (PyPI ``aisfx`` 0.1.2, 512-d).

aiSFX embeds ~2.3 s blocks of a 96-band log-mel spectrogram; a clip's vector is the mean of its
blocks' vectors (blocks overlap by half, as in the package). Clips shorter than one block are padded
with silence rather than refused: many sound effects (a pop, a snap) last a fraction of a second.

Loading its checkpoint safely. The package's own loader calls ``torch.load`` in full-pickle mode,
which fails on torch >= 2.6 and would run arbitrary code from the file. We never do that: the
file's SHA-256 is checked against the one published in aisfx 0.1.2, then it is read with
``weights_only=True`` and an allowlist of exactly the three numpy types its metadata uses.
"""

from __future__ import annotations

import os
from typing import List, Optional

import numpy as np

from retrieval.encoders.base import AudioEncoder
from retrieval.encoders.runtime import Export, onnx_session, package_versions
from retrieval.errors import InputError
from retrieval.media.audio import load_audio
from retrieval.store.arrow import sha256_file

AISFX_CHECKPOINT_SHA256 = "499ea75909c932a2f94c35fa722fa4fabc5bcb7e84917209cc5f7402627b7eb5"
# Spectrogram and blocking parameters of aisfx.inference (SAMPLE_RATE, SPEC_*, MEL_BINS, F_*, EMB_BLOCK_LENGTH).
SAMPLE_RATE, WIN, HOP, MELS, F_MIN, F_MAX = 44100.0, 2048, 1024, 96, 0.0, 22050.0
BLOCK, BLOCK_HOP = 100, 50
SPEC_MAX = 9.457798957824707  # aisfx's "original" min-max normalisation (min 0)


def aisfx_spectrogram(y: np.ndarray) -> np.ndarray:
    """(frames, 96) normalised log-mel spectrogram, computed as aisfx's librosa path does."""
    import warnings

    import librosa

    peak = float(np.max(np.abs(y)))
    y = y / (peak if peak > 0 else 1.0)
    with warnings.catch_warnings():  # "n_fft too large" for clips under 46 ms: they are padded, as in aisfx
        warnings.simplefilter("ignore", UserWarning)
        spec = librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE, n_mels=MELS, norm=1.0, fmin=F_MIN, fmax=F_MAX,
                                              htk=True, power=2.0, hop_length=HOP, win_length=WIN)
    return (np.log10(spec * 10000.0 + 1) / SPEC_MAX).T.astype(np.float32)


def blocks_of(spec: np.ndarray) -> np.ndarray:
    """Overlapping (BLOCK, 96) windows; a short clip becomes one block padded with silence (zeros)."""
    if len(spec) < BLOCK:
        spec = np.vstack([spec, np.zeros((BLOCK - len(spec), spec.shape[1]), np.float32)])
    starts = range(0, len(spec) - BLOCK + 1, BLOCK_HOP)
    return np.stack([spec[s:s + BLOCK] for s in starts])


AISFX_NEEDS = ("the 'aisfx' encoder needs PyPI aisfx 0.1.2 (install with --no-deps: it pins old numpy) plus librosa "
               "and soundfile: pip install --no-deps aisfx==0.1.2 && pip install librosa soundfile")


def aisfx_checkpoint(path: Optional[str] = None) -> str:
    """``path`` (default: aisfx's own checkpoint, found without importing the package, which imports
    torch), checked to be the checkpoint aisfx 0.1.2 published."""
    if path is None:
        import importlib.util

        spec = importlib.util.find_spec("aisfx")
        if spec is None or not spec.submodule_search_locations:
            raise InputError(AISFX_NEEDS)
        path = os.path.join(list(spec.submodule_search_locations)[0], "models", "checkpoint.pth")
    digest = sha256_file(path) if os.path.isfile(path) else "missing"
    if digest != AISFX_CHECKPOINT_SHA256:
        raise InputError(f"expected the aisfx 0.1.2 checkpoint (sha256 {AISFX_CHECKPOINT_SHA256[:12]}…) at {path}, "
                         f"got sha256 {digest[:12]}…; reinstall aisfx==0.1.2")
    return path


def load_aisfx_model(device: str, path: Optional[str] = None):
    """aiSFX's network with the checkpoint at ``path`` (default: the package's), checked first."""
    path = aisfx_checkpoint(path)
    try:
        from aisfx.models.cnn2d import CrossNet, EmbeddingNet
    except ImportError as exc:
        raise InputError(AISFX_NEEDS) from exc
    import torch
    from numpy._core.multiarray import scalar

    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("int64"))]
    with torch.serialization.safe_globals(allowed):
        weights, datasets = torch.load(path, map_location="cpu", weights_only=True)
    model = CrossNet(EmbeddingNet("max", 3, 1, 64), datasets, "cpu")
    model.load_state_dict(weights)
    return model.to(device).eval()


class AisfxAudioEncoder(AudioEncoder):
    """Mean over ~2.3 s blocks of aiSFX's 512-d block embeddings. On a CPU the block network runs
    on OpenVINO, else ONNX Runtime (``runtime``: retrieval/encoders/runtime.py, results/bench/encoders.md);
    decoding and spectrograms are made a batch ahead in a worker thread. A cached export runs
    without torch: its key is the checkpoint's checked hash."""

    def __init__(self, *, name: str, device: str = "cpu", runtime: Optional[str] = None):
        self._checkpoint = aisfx_checkpoint()
        self.name, self.device, self.dim, self._model = name, device, 512, None
        identity = {"weights": AISFX_CHECKPOINT_SHA256, "packages": package_versions("aisfx")}
        # measured fastest on OpenVINO, cosine 0.99996 in bfloat16
        self._onnx = onnx_session(runtime, device, Export("aisfx-blocks", identity, self._export_parts),
                                  prefer=("openvino", "onnx"))
        self.runtime = "torch" if self._onnx is None else self._onnx.runtime
        if self._onnx is None:
            self._load()

    @property
    def model(self):
        """The torch network (loaded on first use: a cached export runs without it)."""
        self._load()
        return self._model

    def _load(self) -> None:
        if self._model is None:
            self._model = load_aisfx_model(self.device, self._checkpoint)

    def _export_parts(self):
        import torch

        self._load()
        model = self.model

        class Blocks(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, x):
                return self.model.get_embedding(x)

        return (Blocks().eval(), (torch.zeros(3, BLOCK, MELS),), ["blocks"], ["embedding"],
                {"blocks": {0: "n"}, "embedding": {0: "n"}}, {})

    def _prepare(self, batch: List):
        """Each clip's spectrogram blocks: decoding and librosa, a batch ahead of the network."""
        return [blocks_of(aisfx_spectrogram(load_audio(path, SAMPLE_RATE))) for path in batch]

    def _encode_batch(self, batch: List) -> np.ndarray:
        clips = batch if batch and isinstance(batch[0], np.ndarray) else self._prepare(batch)
        sizes = [len(c) for c in clips]
        if self._onnx is not None:
            emb = self._onnx.run({"blocks": np.ascontiguousarray(np.concatenate(clips), np.float32)})[0]
        else:
            import torch

            with torch.inference_mode():
                x = torch.from_numpy(np.concatenate(clips)).to(self.device)
                emb = self.model.get_embedding(x).float().cpu().numpy()
        out, start = [], 0
        for n in sizes:
            out.append(emb[start:start + n].mean(0))
            start += n
        return np.stack(out)


class TransformersAudioEncoder(AudioEncoder):
    """A transformers audio model (wav2vec 2.0, HuBERT, AST, CLAP's audio tower…) by hub name or
    local folder: its own feature extractor at its own sampling rate, then the mean of
    ``last_hidden_state`` over time. Clips are encoded one at a time (no padding to mix in)."""

    def __init__(self, model: str, *, name: str, device: str = "cpu"):
        import torch
        from transformers import AutoFeatureExtractor, AutoModel

        self.extractor = AutoFeatureExtractor.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.sr = float(getattr(self.extractor, "sampling_rate", 16000))
        dim = getattr(self.model.config, "hidden_size", None)
        if dim is None:
            raise InputError(f"cannot tell the feature width of {model!r}: its config has no hidden_size")
        self.name, self.device, self.dim, self._torch = name, device, int(dim), torch

    def _encode_batch(self, batch: List) -> np.ndarray:
        out = []
        for path in batch:
            inputs = self.extractor(load_audio(path, self.sr), sampling_rate=int(self.sr), return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with self._torch.inference_mode():
                hidden = self.model(**inputs).last_hidden_state
            out.append(hidden.mean(1)[0].float().cpu().numpy())
        return np.stack(out)
