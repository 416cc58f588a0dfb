"""What every encoder promises, checked: the public test a plug-in runs in its own test suite.

A collection mixes vectors made at build time with vectors made at query time, in batches of other
sizes and orders, maybe in another process: an encoder that breaks one of these promises gives
answers that change with how it was called. So an encoder (built in, ``onnx:PATH`` or a plug-in's)
must give float32 unit rows of its stated width, the same for the same input however it is batched
or ordered, and be rebuilt from its name (the spec a manifest stores).

>>> from retrieval.encoders.conformance import check_encoder   # doctest: +SKIP
>>> check_encoder(MyEncoder(...), ["a red apple", "a dog", "two cats"])
"""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from retrieval.encoders.base import MODALITIES, Encoder


class ConformanceError(AssertionError):
    """An encoder broke a promise; the message lists every one it broke."""


def check_encoder(encoder: Encoder, samples: Sequence[Any], *, atol: float = 1e-4, rebuild: bool = True) -> None:
    """Raise :class:`ConformanceError` naming every broken promise of ``encoder`` on ``samples`` (at
    least two inputs of its modality: texts, or image or sound files). ``atol``: how far two
    encodings of one input may differ by batching or order. ``rebuild``: also check that
    ``load_encoder(encoder.name, encoder.modality)`` gives the same vectors."""
    samples = list(samples)
    if len(samples) < 2:
        raise ValueError(f"expected at least two samples to check batching with, got {len(samples)}")
    problems = _identity(encoder)
    if not problems:
        first = encoder.encode(samples, batch_size=len(samples), show_progress_bar=False)
        problems = _shape(encoder, first, len(samples)) or _behaviour(encoder, samples, first, atol, rebuild)
    if problems:
        raise ConformanceError(f"{type(encoder).__name__} {getattr(encoder, 'name', '')!r} breaks the encoder "
                               f"contract:\n- " + "\n- ".join(problems))


def _identity(enc) -> List[str]:
    out = []
    if not isinstance(enc, Encoder):
        out.append(f"is a {type(enc).__name__}, expected a subclass of retrieval.encoders.Encoder")
    if getattr(enc, "modality", None) not in MODALITIES:
        out.append(f"modality is {getattr(enc, 'modality', None)!r}, expected one of {MODALITIES}")
    if not isinstance(getattr(enc, "name", None), str) or not enc.name.strip():
        out.append(f"name is {getattr(enc, 'name', None)!r}, expected the spec that rebuilds it, e.g. 'myenc:ARG'")
    if not isinstance(getattr(enc, "dim", None), (int, np.integer)) or enc.dim <= 0:
        out.append(f"dim is {getattr(enc, 'dim', None)!r}, expected a positive int")
    return out


def _shape(enc, x, n: int) -> List[str]:
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape != (n, enc.dim):
        what = f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}"
        return [f"encode gave {what}, expected a float32 array of shape {(n, enc.dim)}"]
    norms = np.linalg.norm(x, axis=1) if np.isfinite(x).all() else None
    if norms is None:
        return ["encode gave NaN or infinite values"]
    if np.abs(norms - 1).max() > 1e-4:
        return [f"rows have L2 norms {norms.min():.4f}..{norms.max():.4f}, expected 1"]
    return []


def _behaviour(enc, samples, first, atol: float, rebuild: bool) -> List[str]:
    def differs(x) -> float:
        return float(np.abs(np.asarray(x, np.float32) - first).max())

    out = []
    checks = [("a second call", lambda: enc.encode(samples, batch_size=len(samples), show_progress_bar=False)),
              ("batches of one", lambda: enc.encode(samples, batch_size=1, show_progress_bar=False)),
              ("the reversed order", lambda: enc.encode(samples[::-1], batch_size=len(samples),
                                                        show_progress_bar=False)[::-1])]
    if rebuild:
        from retrieval.encoders.registry import load_encoder

        checks.append(("the encoder its name rebuilds", lambda: load_encoder(enc.name, enc.modality, device=enc.device)
                       .encode(samples, batch_size=len(samples), show_progress_bar=False)))
    for what, again in checks:
        d = differs(again())
        if d > atol:
            out.append(f"{what} gives other vectors (max difference {d:.2e} > atol {atol:g})")
    empty = enc.encode([], show_progress_bar=False)
    if getattr(empty, "shape", None) != (0, enc.dim):
        out.append(f"no inputs gave shape {getattr(empty, 'shape', None)}, expected {(0, enc.dim)}")
    return out
