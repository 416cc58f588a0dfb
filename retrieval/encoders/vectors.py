"""A side whose embeddings were made elsewhere: ``vectors:NAME``.

Users of this engine often own a model of their images or sounds (or of their text) that runs
somewhere else; they bring its vectors instead of its files. ``vectors:NAME`` is the encoder spec of
such a side: NAME names the space (so a collection, stitching and ``info`` know which vectors belong
together) and no model is loaded. Its inputs are vectors, checked here: one width, finite, not all
zero, each refused with its row number.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from retrieval.core.normalise import l2_normalise
from retrieval.encoders.base import MODALITIES, Encoder
from retrieval.errors import InputError

BACKEND = "vectors"


def is_vectors(spec) -> bool:
    """Whether an encoder spec (or an encoder's name) names a side of precomputed vectors."""
    return isinstance(spec, str) and spec.strip().startswith(BACKEND + ":")


def space_of(spec) -> Optional[str]:
    """NAME of a ``vectors:NAME`` spec (None for any other spec)."""
    return spec.strip()[len(BACKEND) + 1:].strip() if is_vectors(spec) else None


def check_vectors(rows, *, dim: Optional[int] = None, what: str = "vectors", chunk: int = 1 << 16) -> np.ndarray:
    """``rows`` as a float32 (n, d) array, refused with the first bad rows' numbers when a row has
    another width than ``dim`` (or than the first row), a NaN or infinite value, or only zeros.
    Worked ``chunk`` rows at a time (each row alone decides its result): a million rows stay a
    million rows of float32, not a float64 copy of them all."""
    if not (isinstance(rows, np.ndarray) and rows.ndim == 2):
        rows = list(rows)
        widths = [np.shape(r) for r in rows]
        want = (dim,) if dim is not None else (widths[0] if widths else None)
        bad = [i for i, w in enumerate(widths) if w != want or len(w) != 1]
        if bad:
            raise InputError(f"expected {what} of width {want[0] if want else '?'} (one per row), got another width "
                             f"in row(s) {bad[:10]}{' …' if len(bad) > 10 else ''}, e.g. shape {widths[bad[0]]}")
    n = len(rows)
    width = (rows.shape[1] if isinstance(rows, np.ndarray) else (len(rows[0]) if n else dim or 0))
    if dim is not None and width != dim:
        raise InputError(f"expected {what} of width {dim}, got width {width}")
    out = np.empty((n, width), np.float32)
    unusable = {"NaN or infinite values": [], "only zeros (no direction)": []}
    for start in range(0, n, chunk):
        part = rows[start:start + chunk]
        x = part.astype(np.float64, copy=False) if isinstance(part, np.ndarray) else np.asarray(part, np.float64)
        x = x.reshape(len(x), width)
        finite = np.isfinite(x).all(axis=1)
        unusable["NaN or infinite values"].extend((start + np.flatnonzero(~finite)).tolist())
        unusable["only zeros (no direction)"].extend((start + np.flatnonzero(finite & ~(x != 0).any(axis=1))).tolist())
        if not any(unusable.values()):
            x = x / np.abs(x).max(axis=1, keepdims=True)  # no overflow in the norm
            out[start:start + len(x)] = l2_normalise(x.astype(np.float32))
    for why, bad in unusable.items():
        if bad:
            raise InputError(f"expected finite, non-zero {what}, got {why} in row(s) {bad[:10]}"
                             f"{' …' if len(bad) > 10 else ''}")
    return out


class VectorsEncoder(Encoder):
    """The encoder of a ``vectors:NAME`` side: it takes vectors and gives them back as unit rows;
    files and texts are refused with where vectors come in. ``dim`` is the collection's (from its
    manifest) or set by the first vectors it is given."""

    def __init__(self, space: str, *, name: str, modality: str, dim: Optional[int] = None, device: str = "cpu"):
        if modality not in MODALITIES:
            raise InputError(f"expected a modality among {MODALITIES}, got {modality!r}")
        if not space or not space.strip():
            raise InputError(f"expected a name for the vectors' space, as in 'vectors:my-model', got {name!r}")
        self.space, self.name, self.modality, self.device = space.strip(), name, modality, device
        self.dim = int(dim or 0)

    def encode(self, inputs: Sequence[Any], *, batch_size: int = 32, show_progress_bar: Optional[bool] = None):
        items = list(inputs) if not isinstance(inputs, np.ndarray) else inputs
        if len(items) and not isinstance(items, np.ndarray) and isinstance(items[0], (str, bytes)):
            raise InputError(f"expected {self.modality} vectors for the {self.name!r} side (no model is loaded for "
                             f"it), got {type(items[0]).__name__} {str(items[0])[:60]!r}; give query vectors "
                             f"('retrieval search|classify --vector-file q.npy', Collection.search_vectors or "
                             f"classify_vectors), or, if "
                             f"{self.space!r} is the encoder that made the vectors, encode queries with it "
                             f"(--{self.modality}-encoder {self.space})")
        if not len(items):
            return np.zeros((0, self.dim), np.float32)
        x = check_vectors(items, dim=self.dim or None, what=f"{self.modality} vectors of {self.name!r}")
        self.dim = x.shape[1]
        return x

    def _encode_batch(self, batch):  # encode() is overridden: vectors need no batching
        raise NotImplementedError
