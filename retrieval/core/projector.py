"""Projectors: chains of steps (retrieval/core/step.py) made from a spec, and the keyword form.

A collection's manifest holds its projector as a spec, the list of its steps (or one ``blocks`` step of
named chains); :func:`projector_from_spec` rebuilds it for the reader, stitching, classification and the
distributed build alike. Manifests of format 6 and before hold the flat parameters a projector had
before steps (``{"kind", "k", "p", "center", "whiten", "background", ...}``): :func:`spec_from_params`
reads them as the same chain, so those collections answer exactly as they did.

:class:`RelativeProjector` keeps the keyword form (``RelativeProjector(k=64, p=8.0, center=True)``)
for experiments and tests: it is that spec, fitted.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Union

import numpy as np

from retrieval.core.centre import Centre, Unit
from retrieval.core.normalise import l2_normalise
from retrieval.core.rarity import Rarity  # noqa: F401  (registers the step)
from retrieval.core.relative import KINDS
from retrieval.core.relativisers import AsifTopK, CosineRelative, check_k_p
from retrieval.core.step import Blocks, Chain, step_from_spec
from retrieval.core.style import Restyle
from retrieval.core.whiten import ShrinkageWhiten, check_lambda
from retrieval.errors import InputError

Projector = Union[Chain, Blocks]
Spec = Union[List[Dict], Dict]
# The flat parameters of format 6 and before that describe the background bank.
BACKGROUND_PARAMS = ("background", "background_weight", "background_k")


def chain_spec(*, kind: str = "asif", k: int = 64, p: float = 8.0, center: bool = False, whiten: float = 0.0,
               style: bool = False) -> List[Dict]:
    """The steps of one block: unit rows (through the style normaliser when there is one), centring
    (whitening implies it), whitening, unit rows again after centring, then the relativiser."""
    steps = [Restyle().to_spec() if style else Unit().to_spec()]
    if center or whiten:
        steps.append(Centre().to_spec())
    if whiten:
        steps.append(ShrinkageWhiten(whiten).to_spec())
    if center or whiten:
        steps.append(Unit().to_spec())
    steps.append(AsifTopK(k, p).to_spec() if kind == "asif" else CosineRelative().to_spec())
    return steps


def blocks_spec(main: List[Dict], bank: Optional[List[Dict]] = None, bank_weight: float = 1.0) -> Spec:
    """One chain, or the anchors' chain and the background bank's side by side (the bank weighted)."""
    if bank is None:
        return main
    return {"step": "blocks", "blocks": {"anchors": main, "bank": bank}, "weights": {"anchors": 1.0, "bank": bank_weight}}


def spec_from_params(params: Mapping, *, style: bool = False) -> Spec:
    """The spec of a projector described by format-6 flat parameters (what ``get_params`` returned)."""
    base = dict(kind=params.get("kind", "asif"), k=params.get("k", 64), p=params.get("p", 8.0),
                center=bool(params.get("center", False)), whiten=params.get("whiten", 0.0) or 0.0)
    n_bank = int(params.get("background", 0) or 0)
    main = chain_spec(**base, style=style)
    if not n_bank:
        return main
    bk = params.get("background_k")
    bank = chain_spec(**dict(base, k=min(base["k"], n_bank) if bk is None else bk), style=style)
    return blocks_spec(main, bank, float(params.get("background_weight", 1.0)))


def is_blocks(spec: Spec) -> bool:
    return isinstance(spec, Mapping) and spec.get("step") == "blocks"


def projector_from_spec(spec: Spec, *, style=None, select: str = "auto", device: str = "cpu",
                        ef: int = 256) -> Projector:
    """The unfitted projector a spec describes. ``style``: the StyleNormaliser a ``style`` step needs;
    ``select`` / ``device`` / ``ef``: the top-k engine (retrieval/core/engines.py), a run-time choice."""
    if is_blocks(spec):
        blocks, weights = spec.get("blocks"), spec.get("weights", {})
        if not (isinstance(blocks, Mapping) and blocks and isinstance(weights, Mapping)):
            raise InputError(f"expected a blocks step with named chains under 'blocks' and their 'weights', got {spec!r}")
        return Blocks({n: projector_from_spec(s, style=style, select=select, device=device, ef=ef)
                       for n, s in blocks.items()}, weights)
    if not isinstance(spec, list):
        raise InputError(f"expected a projector spec (a list of steps or a blocks step), got {spec!r}")
    steps = []
    for s in spec:
        step = step_from_spec(s)
        if isinstance(step, Restyle):
            step.normaliser = style
        elif isinstance(step, AsifTopK):
            step = AsifTopK(step.k, step.p, select=select, device=device, ef=ef)
        steps.append(step)
    return Chain(steps)


def fit_projector(spec: Spec, anchors: np.ndarray, *, bank: Optional[np.ndarray] = None, **engine) -> Projector:
    """The projector a spec describes fitted on ``anchors`` (and the background ``bank``'s vectors when
    the spec has a bank block); ``engine``: see :func:`projector_from_spec`."""
    proj = projector_from_spec(spec, **engine)
    if isinstance(proj, Blocks):
        if bank is None:
            raise InputError(f"expected the background bank's vectors for the projector's blocks {sorted(proj.blocks)}")
        return proj.fit({"anchors": anchors, "bank": bank})
    return proj.fit(anchors)


def spec_summary(spec: Spec) -> Dict:
    """The flat description (``kind``, ``k``, ``p``, ``center``, ``whiten``, and the bank's
    ``background`` weight and k) of a spec: what ``info`` shows."""
    if is_blocks(spec):
        out = spec_summary(spec["blocks"]["anchors"])
        if "bank" in spec["blocks"]:
            bank = spec_summary(spec["blocks"]["bank"])
            out.update(background_weight=spec["weights"]["bank"], **({"background_k": bank["k"]} if "k" in bank else {}))
        return out
    return projector_from_spec(spec, style=None).summary()


def spec_without(spec: Spec, name: str) -> Spec:
    """The spec without its steps named ``name``, in every block: e.g. ``spec_without(s, "whiten")``."""
    if is_blocks(spec):
        return dict(spec, blocks={n: spec_without(c, name) for n, c in spec["blocks"].items()})
    return [step for step in spec if step.get("step") != name]


def spec_block(spec: Spec, name: str) -> Spec:
    """One block's chain of a blocks spec (e.g. the anchors' without the background bank); a plain
    chain is its own only block."""
    if not is_blocks(spec):
        return spec
    if name not in spec["blocks"]:
        raise InputError(f"expected one of the blocks {sorted(spec['blocks'])}, got {name!r}")
    return spec["blocks"][name]


def without_background(params: dict) -> dict:
    """Flat parameters without the background bank's (pivot sets never carry one)."""
    return {key: v for key, v in params.items() if key not in BACKGROUND_PARAMS}


class RelativeProjector:
    """A projector in keyword form: ``RelativeProjector(k=2, p=1.0).fit(anchors).transform(x)``. With
    ``background=N`` the last N anchors are a background bank, its own block (retrieval/build/background.py).

    >>> proj = RelativeProjector(k=2, p=1.0).fit(np.eye(3, dtype=np.float32))
    >>> proj.transform(np.array([[1.0, 0.5, 0.0]], np.float32)).nnz
    2
    """

    # Thirteen keywords on purpose: this is the flat form experiments sweep and format-6 manifests
    # stored; the product composes steps (Recipe.chain) instead.
    def __init__(self, k: int = 64, p: float = 8.0, kind: str = "asif", center: bool = False,
                 select: str = "auto", device: str = "cpu", ef: int = 256, style=None, whiten: float = 0.0,
                 background: int = 0, background_weight: float = 1.0, background_k: Optional[int] = None):
        self.k, self.p, self.kind, self.center, self.select, self.device = k, p, kind, center, select, device
        self.ef, self.style, self.whiten = ef, style, whiten
        self.background, self.background_weight, self.background_k = background, background_weight, background_k

    def check_params(self, n_anchors: int) -> None:
        """Raise InputError unless the parameters suit ``n_anchors`` anchors (call before costly encoding)."""
        if self.kind not in KINDS:
            raise InputError(f"expected kind in {KINDS}, got {self.kind!r}")
        check_k_p(self.k, self.p)
        if self.kind == "asif" and self.k > n_anchors:
            raise InputError(f"expected k <= number of anchors ({n_anchors}), got k={self.k}; lower k or add anchors")
        AsifTopK(select=self.select)
        self.whiten = check_lambda(self.whiten)
        if not isinstance(self.background, (int, np.integer)) or not 0 <= self.background < n_anchors:
            raise InputError(f"expected a background bank of 0 to {n_anchors - 1} of the {n_anchors} anchors, "
                             f"got background={self.background!r}")
        w = self.background_weight
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or not np.isfinite(w) or w < 0:
            raise InputError(f"expected a finite background weight >= 0, got {w!r}")
        bk = self.background_k
        if self.background and bk is not None and (not isinstance(bk, (int, np.integer)) or not 1 <= bk <= self.background):
            raise InputError(f"expected a background k from 1 to the bank's {self.background} anchors, got {bk!r}")
        if self.background and self.kind == "asif" and self.k > n_anchors - self.background:
            raise InputError(f"expected k <= number of anchors without the background bank "
                             f"({n_anchors - self.background}), got k={self.k}; lower k or add anchors")

    def spec(self) -> Spec:
        return spec_from_params(self.get_params(), style=self.style is not None)

    def fit(self, anchors: np.ndarray) -> "RelativeProjector":
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[0] == 0:
            raise InputError(f"expected anchors as a non-empty 2-D array, got shape {anchors.shape}")
        self.check_params(anchors.shape[0])
        n = self.background
        engine = dict(style=self.style, select=self.select, device=self.device, ef=self.ef)
        self.projector_ = fit_projector(self.spec(), anchors[:-n] if n else anchors,
                                        bank=anchors[-n:] if n else None, **engine)
        self.n_anchors_, self.dim_ = anchors.shape
        return self

    def _fitted(self) -> Projector:
        if not hasattr(self, "projector_"):
            raise InputError("this RelativeProjector is not fitted yet; call fit(anchor_vectors) first")
        return self.projector_

    def transform(self, x: np.ndarray, *, block: Optional[int] = None):
        return self._fitted().transform(x, block=block)

    def dense(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        return self._fitted().dense(x, dtype)

    def dense_rows(self, x: np.ndarray) -> np.ndarray:
        return self._fitted().dense_rows(x)

    def transform_rows(self, x: np.ndarray):
        return self._fitted().transform_rows(x)

    def input_mean(self, x: np.ndarray, *, block: int = 65536) -> np.ndarray:
        return self._fitted().input_mean(x, block=block)

    def at_centre(self, x: np.ndarray) -> np.ndarray:
        return self._fitted().at_centre(x)

    def centred_on(self, mean: np.ndarray) -> Projector:
        return self._fitted().centred_on(mean)

    def fit_transform(self, anchors: np.ndarray, x: np.ndarray):
        return self.fit(anchors).transform(x)

    def summary(self) -> dict:
        return self.get_params()

    def get_params(self) -> dict:
        # "whiten" only when on: a manifest without it (every collection before whitening) means off.
        return {"kind": self.kind, "k": int(self.k), "p": float(self.p), "center": bool(self.center),
                **({"whiten": float(self.whiten)} if self.whiten else {}),
                **({"background": int(self.background), "background_weight": float(self.background_weight),
                    **({"background_k": int(self.background_k)} if self.background_k is not None else {})}
                   if self.background else {})}


def pivot(projector, landing: np.ndarray, x: np.ndarray, *, center: Optional[bool] = None) -> np.ndarray:
    """Carry vectors into another space through parallel anchors: relativise ``x`` against the
    anchors ``projector`` was fitted on, then take the same weights over ``landing``, the anchors'
    other side (row i of both describes one thing), and L2-normalise.

    With ASIF weights this is a weighted mean of the anchors ``x`` resembles most: a sound of a dog
    lands near the captions of the dog-like sounds. ``center`` (default: whether the projector
    centres) first removes the landing anchors' mean: every caption of a sound set says "the sound of
    …", and a weighted mean of many of them is mostly that shared phrase, which then finds
    loudspeakers and ears instead of dogs. Rows are computed alone (batch-independent).
    """
    landing = np.asarray(landing, np.float32)
    if landing.ndim != 2 or len(landing) != projector.n_anchors_:
        raise InputError(f"expected one landing vector per anchor ({projector.n_anchors_}), got shape {landing.shape}")
    if projector.summary().get("center", False) if center is None else center:
        landing = landing - landing.mean(0)
    w = projector.transform_rows(x)
    out = np.asarray(w @ landing, np.float32)
    return l2_normalise(out)
