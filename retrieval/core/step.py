"""A projector is a chain of small fitted steps, and a projector may be a union of named blocks.

Every quality idea of the relative projection is one :class:`Step`: it is fitted on the anchors of one
modality (never the corpus, so a collection refits it exactly when opened), transforms vectors, and
writes itself as a spec (``{"step": "whiten", "lam": 9.0}``) that :func:`step_from_spec` turns back into
the step. A :class:`Chain` runs its steps in order on the anchors and on every input, up to a
relativiser (ASIF's top k, or dense cosines) that turns prepared inputs into relative vectors; after it
come only *post* steps, which reweight relative vectors and whose parameters are all in their spec
(retrieval/core/rarity.py: weights a build learnt from the corpus, stored, so the refit is still exact).
:class:`Blocks` puts chains side by side under names (``{"anchors": ..., "bank": ...}``), each
relativised against its own anchors and weighted, as scikit-learn's ``FeatureUnion`` does.

Variations are edits of the chain (:meth:`Chain.without`, :meth:`Blocks.only`), not parameters; a new
idea is a new step class (it registers itself by its ``name``) and one line of the build recipe
(retrieval/build/recipe.py) that puts it in the chain.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Dict, List, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from retrieval.core.relative import cosine_relative
from retrieval.errors import CollectionFormatError, InputError

REGISTRY: Dict[str, type] = {}


def transform_rows(projector, x: np.ndarray):
    """Like ``projector.transform``, but each row is computed alone, in the same shape every time.

    A batched GEMM and a single-row product differ by ~1e-8, enough to flip anchors that tie in
    theory; queries go through here so that an answer never depends on its batch-mates.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        return projector.transform(x)
    rows = [projector.transform(x[i:i + 1]) for i in range(len(x))]
    return sp.vstack(rows, format="csr").astype(np.float32) if projector.kind == "asif" else np.vstack(rows)


# A float64 copy of the anchors is kept up to this size: a served query's tie-break needs its dense
# cosines in float64, and converting the anchors for every query was most of a search's time.
KEEP_CONVERTED_BYTES = 256 * 2**20


def anchors_as(relativiser, dtype) -> np.ndarray:
    """The relativiser's prepared anchors in ``dtype``, converted once (while small enough) and kept
    beside the anchors they came from, so a refitted or copied relativiser never uses a stale copy."""
    anchors, dtype = relativiser.anchors_, np.dtype(dtype)
    if anchors.dtype == dtype:
        return anchors
    kept = getattr(relativiser, "_converted", {})
    hit = kept.get(dtype)
    if hit is not None and hit[0] is anchors:
        return hit[1]
    converted = np.ascontiguousarray(anchors, dtype)
    if converted.nbytes <= KEEP_CONVERTED_BYTES:
        relativiser._converted = {**kept, dtype: (anchors, converted)}  # a new dict: copies share none
    return converted


class Step:
    """One fitted transformation of one modality's vectors. ``__init__`` stores the parameters named
    in ``PARAMS`` (what the spec holds); ``fit`` learns attributes with a trailing underscore."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[Sequence[str]] = ()
    # Whether transforming a batch gives each row exactly (bit for bit) what transforming that row alone
    # gives: true of elementwise steps and per-row norms, not of a matrix product (BLAS computes a batch
    # in other blocks than a single row). Queries' rows are prepared together only through such steps.
    row_independent: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            REGISTRY[cls.name] = cls

    def fit(self, x: np.ndarray) -> "Step":
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_spec(self) -> Dict:
        return {"step": self.name, **{p: getattr(self, p) for p in self.PARAMS}}

    @classmethod
    def from_spec(cls, spec: Mapping) -> "Step":
        return cls(**{p: spec[p] for p in cls.PARAMS if p in spec})

    def summary(self) -> Dict:
        """What this step means in the flat form a manifest's projector had before steps (``k``,
        ``center``, ``whiten`` ...): how ``info`` and EXPLAIN describe a projector."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{p}={getattr(self, p)!r}' for p in self.PARAMS)})"


def step_from_spec(spec: Mapping) -> Step:
    """The step a spec describes, or CollectionFormatError naming the known steps."""
    name = spec.get("step") if isinstance(spec, Mapping) else None
    if name not in REGISTRY:
        raise CollectionFormatError(f"expected a projector step, one of {sorted(REGISTRY)}, got {spec!r}")
    return REGISTRY[name].from_spec(spec)


class Chain:
    """Preparing steps, a relativiser (a step with ``anchors_``, ``kind`` and ``relativise``), then post steps."""

    def __init__(self, steps: Sequence[Step]):
        steps = list(steps)
        at = max((i for i, s in enumerate(steps) if hasattr(s, "relativise")), default=-1)
        if at < 0 or not all(getattr(s, "post", False) for s in steps[at + 1:]):
            raise InputError(f"expected a chain of steps with a relativiser, then only steps that reweight relative "
                             f"vectors (e.g. rarity), got {steps!r}")
        self.steps: List[Step] = steps
        self._at = at

    @property
    def relativiser(self) -> Step:
        return self.steps[self._at]

    @property
    def preparing(self) -> List[Step]:
        """The steps before the relativiser."""
        return self.steps[:self._at]

    def finish(self, rel):
        """The relativiser's output through the steps after it (those that reweight relative vectors)."""
        for step in self.steps[self._at + 1:]:
            rel = step.transform(rel)
        return rel

    @property
    def kind(self) -> str:
        return self.relativiser.kind

    def fit(self, anchors: np.ndarray) -> "Chain":
        x = np.asarray(anchors, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InputError(f"expected anchors as a non-empty 2-D array, got shape {x.shape}")
        self.n_anchors_, self.dim_ = x.shape
        for step in self.preparing:
            x = step.fit(x).transform(x)
        self.relativiser.fit(x)
        for step in self.steps[self._at + 1:]:
            step.fit_relative(len(x))
        return self

    def prepare(self, x: np.ndarray) -> np.ndarray:
        for step in self.preparing:
            x = step.transform(x)
        return x

    def prepare_rows(self, x: np.ndarray) -> np.ndarray:
        """``prepare`` with each row's result what that row alone gives: a row-independent step runs on
        the whole batch at once, any other a row at a time."""
        for step in self.preparing:
            if step.row_independent or len(x) < 2:
                x = step.transform(x)
            else:
                x = np.vstack([step.transform(x[i:i + 1]) for i in range(len(x))])
        return x

    def check_input(self, x) -> np.ndarray:
        if not hasattr(self, "n_anchors_"):
            raise InputError("this projector is not fitted yet; call fit(anchor_vectors) first")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim_:
            raise InputError(f"expected vectors of width {self.dim_} (the anchors' width), got shape {x.shape}; "
                             f"were they made by the same encoder as the anchors?")
        return x

    def transform(self, x: np.ndarray, *, block: Optional[int] = None):
        return self.finish(self.relativiser.relativise(self.check_input(x), self.prepare, block=block))

    def transform_rows(self, x: np.ndarray):
        """``transform`` a row at a time (see :func:`transform_rows`). When the relativiser selects each
        row's anchors by itself (``from_sims``), only the preparation and the product are taken as for a
        row alone (:meth:`prepare_rows`, a stack of one-row products): they are what BLAS computes
        differently in another batch; the selection after them runs once over all rows, with the same
        result."""
        rel, x = self.relativiser, np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) < 2 or getattr(rel, "from_sims", None) is None or not rel.rowwise:
            return transform_rows(self, x)
        prepared = self.prepare_rows(self.check_input(x))
        # a stack of one-row products: numpy's matmul runs each through the kernel a lone row gets
        sims = np.matmul(prepared[:, None, :], rel.anchors_.T)[:, 0, :]
        return self.finish(rel.from_sims(sims))

    def dense(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Dense cosines to the prepared anchors (the secondary, tie-breaking score)."""
        return cosine_relative(self.prepare(self.check_input(x)), anchors_as(self.relativiser, dtype), dtype)

    def dense_rows(self, x: np.ndarray) -> np.ndarray:
        """``dense(x, float64)`` for queries: each row prepared alone (a float32 product, as in
        :meth:`transform_rows`, would differ in another batch by ~1e-8), then every row's float64 product
        with the anchors in one call: its batch noise, ~1e-16, is far below the tolerance a tie-break
        uses (``ranking.SECONDARY_EPS``), and one product instead of one per row reads the anchors once."""
        prepared = self.prepare_rows(self.check_input(x))
        return cosine_relative(prepared, anchors_as(self.relativiser, np.float64), np.float64)

    @property
    def centres(self) -> bool:
        """Whether a step centres its inputs (so that :meth:`centred_on` changes anything)."""
        return any(getattr(s, "centres", False) for s in self.steps)

    def _until_centre(self) -> List[Step]:
        steps = self.preparing
        for i, step in enumerate(steps):
            if getattr(step, "centres", False):
                return steps[:i]
        return steps

    def input_mean(self, x: np.ndarray, *, block: int = 65536) -> np.ndarray:
        """The float64 mean of ``x``'s rows as they reach the centring step: what :meth:`centred_on`
        takes. In blocks, so a memory-mapped corpus is never copied whole."""
        x = self.check_input(x)
        if len(x) == 0:
            raise InputError(f"expected at least one vector to take a mean of, got shape {tuple(x.shape)}")
        total = np.zeros(x.shape[1], np.float64)
        for i in range(0, len(x), block):
            total += self.at_centre(x[i:i + block]).sum(0, dtype=np.float64)
        return total / len(x)

    def at_centre(self, x: np.ndarray) -> np.ndarray:
        """``x``'s rows as they reach the centring step (their mean is :meth:`input_mean`)."""
        part = self.check_input(x)
        for step in self._until_centre():
            part = step.transform(part)
        return part

    def centred_on(self, mean: np.ndarray) -> "Chain":
        """A copy whose centring step centres inputs on ``mean`` (see :meth:`input_mean`) instead of the
        anchors' mean; everything else as fitted. Without a centring step, an unchanged copy."""
        out = copy.copy(self)
        out.steps = [s.centred_on(mean, self.dim_) if getattr(s, "centres", False) else s for s in self.steps]
        return out

    def without(self, name: str) -> "Chain":
        """The chain without its steps named ``name`` (unfitted: fit it again)."""
        return Chain([copy.deepcopy(s) for s in self.steps if s.name != name])

    def to_spec(self) -> List[Dict]:
        return [s.to_spec() for s in self.steps]

    def summary(self) -> Dict:
        out: Dict = {}
        for s in self.steps:
            out.update(s.summary())
        return out


class Blocks:
    """Named chains side by side: an input's relative vector is each block's, the block scaled by the
    square root of its weight, so that the inner product of two vectors is the weighted sum of their
    block scores. The first block is the main one: its dense cosines are the secondary score."""

    name = "blocks"

    def __init__(self, blocks: Mapping[str, Chain], weights: Optional[Mapping[str, float]] = None):
        if not blocks:
            raise InputError("expected at least one block of anchors, got none")
        self.blocks: Dict[str, Chain] = dict(blocks)
        self.weights = {n: float((weights or {}).get(n, 1.0)) for n in self.blocks}
        kinds = {c.kind for c in self.blocks.values()}
        if len(kinds) != 1:
            raise InputError(f"expected blocks of one kind of relative vector, got {sorted(kinds)}")

    @property
    def main(self) -> Chain:
        return next(iter(self.blocks.values()))

    @property
    def kind(self) -> str:
        return self.main.kind

    def fit(self, parts: Mapping[str, np.ndarray]) -> "Blocks":
        if set(parts) != set(self.blocks):
            raise InputError(f"expected anchors for the blocks {sorted(self.blocks)}, got {sorted(parts)}")
        for n, chain in self.blocks.items():
            chain.fit(parts[n])
        self.n_anchors_ = sum(c.n_anchors_ for c in self.blocks.values())
        self.dim_ = self.main.dim_
        return self

    def transform(self, x: np.ndarray, *, block: Optional[int] = None):
        x = self.main.check_input(x)
        parts = []
        for n, chain in self.blocks.items():
            rel = chain.transform(x, block=block)
            w = self.weights[n]
            parts.append(rel if w == 1.0 else rel * np.float32(np.sqrt(w)))
        if self.kind == "cosine":
            return np.hstack(parts)
        return sp.hstack(parts, format="csr").astype(np.float32)

    def transform_rows(self, x: np.ndarray):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) < 2:
            return transform_rows(self, x)
        x = self.main.check_input(x)
        parts = []
        for n, chain in self.blocks.items():  # each block's rows as its transform_rows makes them
            rel, w = chain.transform_rows(x), self.weights[n]
            parts.append(rel if w == 1.0 else rel * np.float32(np.sqrt(w)))
        if self.kind == "cosine":
            return np.hstack(parts)
        return sp.hstack(parts, format="csr").astype(np.float32)

    def finish(self, rel):
        """Relative vectors made without the chains' post steps (e.g. by a distributed build's workers)
        as :meth:`transform` makes them: each block's columns through its chain's post steps."""
        parts, at = [], 0
        for n, chain in self.blocks.items():
            scale = np.float32(np.sqrt(self.weights[n]))
            part = rel[:, at:at + chain.n_anchors_]
            parts.append(chain.finish(part / scale) * scale)
            at += chain.n_anchors_
        if self.kind == "cosine":
            return np.hstack(parts)
        return sp.hstack(parts, format="csr").astype(np.float32)

    def dense(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        return self.main.dense(x, dtype)

    def dense_rows(self, x: np.ndarray) -> np.ndarray:
        return self.main.dense_rows(x)

    def input_mean(self, x: np.ndarray, *, block: int = 65536) -> np.ndarray:
        return self.main.input_mean(x, block=block)

    def at_centre(self, x: np.ndarray) -> np.ndarray:
        return self.main.at_centre(x)

    @property
    def centres(self) -> bool:
        return self.main.centres

    def centred_on(self, mean: np.ndarray) -> "Blocks":
        out = copy.copy(self)
        out.blocks = {n: c.centred_on(mean) for n, c in self.blocks.items()}
        return out

    def only(self, name: str) -> Chain:
        """One block's chain, as fitted: e.g. the anchors without the background bank."""
        if name not in self.blocks:
            raise InputError(f"expected one of the blocks {sorted(self.blocks)}, got {name!r}")
        return self.blocks[name]

    def to_spec(self) -> Dict:
        return {"step": self.name, "blocks": {n: c.to_spec() for n, c in self.blocks.items()},
                "weights": dict(self.weights)}

    def summary(self) -> Dict:
        return self.main.summary()
