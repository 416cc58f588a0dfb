"""The last step of a projector chain: prepared inputs become relative vectors against prepared anchors.

* :class:`AsifTopK` (Norelli et al., 2023): cosine similarity to each anchor, keep the top ``k``, clamp
  negatives to 0, raise to the power ``p``, L2-normalise; CSR with ``k`` non-zeros a row. The top k is
  found by one of retrieval/core/engines.py's engines (``select``; a run-time choice, not in the spec).
* :class:`CosineRelative` (Moschella et al., 2023): every cosine, L2-normalised; dense.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

from retrieval.core.engines import SELECTS, NumpyTopK, engine
from retrieval.core.relative import BLOCK, asif_topk, cosine_relative
from retrieval.core.step import Step
from retrieval.errors import InputError


def check_k_p(k, p) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"expected an integer k >= 1, got {k!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not np.isfinite(p) or p <= 0:
        raise InputError(f"expected a finite power p > 0, got p={p!r}")


class AsifTopK(Step):
    name = "asif"
    kind = "asif"
    PARAMS = ("k", "p")

    def __init__(self, k: int = 64, p: float = 8.0, *, select: str = "auto", device: str = "cpu", ef: int = 256):
        check_k_p(k, p)
        if select not in SELECTS:
            raise InputError(f"expected select in {SELECTS}, got {select!r}")
        self.k, self.p, self.select, self.device, self.ef = int(k), float(p), select, device, ef

    def fit(self, anchors: np.ndarray) -> "AsifTopK":
        if self.k > len(anchors):
            raise InputError(f"expected k <= number of anchors ({len(anchors)}), got k={self.k}; "
                             f"lower k or add anchors")
        self.anchors_ = anchors
        self.engine_ = engine(self.select, anchors, self.k, self.p, ef=self.ef, device=self.device)
        return self

    @property
    def rowwise(self) -> bool:
        """Whether :meth:`from_sims` gives what this engine gives: the numpy engine selects from the
        similarities it is given, row by row; the others compute them their own way."""
        return type(self.engine_) is NumpyTopK

    def from_sims(self, sims: np.ndarray) -> sp.csr_matrix:
        """ASIF rows from similarities to the prepared anchors (rows = inputs)."""
        return asif_topk(sims, self.k, self.p).astype(np.float32)

    def relativise(self, x: np.ndarray, prepare: Callable, *, block: Optional[int] = None) -> sp.csr_matrix:
        parts = self.engine_(x, prepare, block or BLOCK)
        if not parts:
            return sp.csr_matrix((0, len(self.anchors_)), dtype=np.float32)
        return sp.vstack(parts, format="csr").astype(np.float32)

    def summary(self) -> dict:
        return {"kind": "asif", "k": self.k, "p": self.p}


class CosineRelative(Step):
    name = "cosine"
    kind = "cosine"

    def fit(self, anchors: np.ndarray) -> "CosineRelative":
        self.anchors_ = anchors
        return self

    def relativise(self, x: np.ndarray, prepare: Callable, *, block: Optional[int] = None) -> np.ndarray:
        return cosine_relative(prepare(x), self.anchors_)

    def summary(self) -> dict:
        return {"kind": "cosine"}
