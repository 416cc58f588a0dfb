"""Relative representations: re-express vectors by their similarities to a set of anchors.

Two kinds (the ``kind`` parameter):

* ``"asif"`` (Norelli et al., 2023): cosine similarity to each anchor, keep the top ``k``, clamp
  negatives to 0, raise to the power ``p``, L2-normalise; a sparse CSR matrix with ``k`` non-zeros
  a row. Two vectors from different modalities become comparable when their anchors are parallel.
* ``"cosine"`` (Moschella et al., 2023): the full vector of cosine similarities, L2-normalised;
  dense. Used as an option and as the engine's secondary (tie-breaking) score.

The maths is in module functions; :class:`RelativeProjector` is a thin scikit-learn style wrapper.
"""

from __future__ import annotations

import copy
import os
from typing import Optional

import numpy as np
import scipy.sparse as sp

from retrieval.core.normalise import l2_normalise
from retrieval.core.whiten import check_lambda, whitening_matrix
from retrieval.errors import InputError

KINDS = ("asif", "cosine")
# How the top k anchors are selected: "numpy" (dense block + partition), "heap" (dense block + a
# one-pass parallel heap, retrieval/core/topk.py), both keeping the lowest anchor number among ties;
# "faiss" (exact flat search; ties in FAISS's order; measured slower here, kept for comparison);
# "auto" = heap from HEAP_MIN_ANCHORS anchors, where selection starts to cost more than the GEMM.
# "torch" runs the similarity GEMM and torch.topk on ``device`` (a CUDA GPU when there is one;
# ties at the k-th go in torch's order).
# "hnsw" is approximate: an HNSW graph over the anchors (FAISS, M=32, efSearch=ef) finds most of the
# true top k for anchor sets in the millions; its recall is measured by scripts/bench_relativise.py.
SELECTS = ("auto", "numpy", "heap", "faiss", "torch", "hnsw")
HEAP_MIN_ANCHORS = 4096
# Heap path: each core takes HEAP_BLOCK rows at a time and walks the anchors HEAP_COLS at a time,
# one single-threaded GEMM into a 4 MB buffer (its L2 cache) then the serial heap kernel over it.
# Measured (scripts/bench_relativise.py): a 2-thread GEMM followed by a 2-thread numba selection
# lost 20-40% to the two thread pools spinning against each other and to re-reading 128 MB blocks
# from memory; a thread per core keeps both the cores and the caches busy with one thing.
HEAP_BLOCK, HEAP_COLS = 1024, 1024
# Rows per block: bounds the dense similarity block at BLOCK x n_anchors floats.
BLOCK = 2048


def asif_topk(sims: np.ndarray, k: int, p: float) -> sp.csr_matrix:
    """ASIF sparsification of a dense similarity block (rows = inputs, columns = anchors).

    Keeps each row's ``k`` largest entries, clamps them at 0, raises to ``p``, L2-normalises.
    Rows whose kept similarities are all <= 0 become all-zero rows (they match nothing).

    >>> asif_topk(np.array([[0.9, 0.1, 0.5]], np.float32), k=2, p=1.0).toarray().round(3)
    array([[0.874, 0.   , 0.486]], dtype=float32)
    """
    n, m = sims.shape
    if not 1 <= k <= m:
        raise InputError(f"expected 1 <= k <= number of anchors ({m}), got k={k}")
    if k == m:
        cols = np.broadcast_to(np.arange(m), (n, m))
    else:
        # Anchors tied with the k-th similarity are taken lowest index first, so a vector's
        # representation never depends on which other vectors share its batch (argpartition's
        # choice among ties does). np.nonzero yields exactly k sorted columns a row, as CSR wants.
        kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1:k]
        above, tied = sims > kth, sims == kth
        need = k - above.sum(1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= need))
        cols = np.nonzero(keep)[1].reshape(n, k)
    return asif_weights(cols, np.take_along_axis(sims, cols, axis=1), m, p)


def asif_weights(cols: np.ndarray, vals: np.ndarray, m: int, p: float) -> sp.csr_matrix:
    """CSR rows from each row's k kept anchors (``cols``, ascending) and their similarities:
    clamp at 0, raise to ``p``, L2-normalise."""
    n, k = cols.shape
    vals = np.array(vals, dtype=np.float32)
    np.maximum(vals, 0.0, out=vals)
    vals = vals ** np.float32(p)
    vals = l2_normalise(vals)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    out = sp.csr_matrix((vals.ravel(), cols.ravel().astype(np.int32), indptr), shape=(n, m))
    out.eliminate_zeros()
    return out


def cosine_relative(x: np.ndarray, anchors: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Dense relative representation: cosine similarities to the anchors, L2-normalised per row.

    ``dtype=np.float64`` is for tie-breaking: a float32 GEMM's result for one row depends on the
    other rows in the batch by ~1e-8, enough to reorder near-identical items; in float64 that noise
    is ~1e-16, below the tolerance ranking uses."""
    sims = np.asarray(x, dtype) @ np.asarray(anchors, dtype).T
    return l2_normalise(sims, dtype=None)


class RelativeProjector:
    """Project vectors of one modality onto that modality's anchors.

    ``fit`` stores the anchors (unit rows); ``transform`` returns CSR for ``kind="asif"`` and a
    dense array for ``kind="cosine"``.

    >>> proj = RelativeProjector(k=2, p=1.0).fit(np.eye(3, dtype=np.float32))
    >>> proj.transform(np.array([[1.0, 0.5, 0.0]], np.float32)).nnz
    2
    """

    def __init__(self, k: int = 64, p: float = 8.0, kind: str = "asif", center: bool = False,
                 select: str = "auto", device: str = "cpu", ef: int = 256, style=None, whiten: float = 0.0,
                 background: int = 0, background_weight: float = 1.0, background_k: Optional[int] = None):
        self.k, self.p, self.kind, self.center, self.select, self.device = k, p, kind, center, select, device
        # background: the last ``background`` anchors are a background bank (retrieval/build/background.py):
        # a second block relativised on its own (its own centring, whitening and top k, k capped at
        # its size) and appended with weight ``background_weight``, so that the inner product of two
        # vectors is their own-anchor score plus that weight times their bank score. ``background_k``:
        # the bank block's k (default: min(k, bank size)); a build sets it from the k it was asked
        # for, not the one capped at the user's anchors, so a few dozen anchors keep a full bank block.
        self.background, self.background_weight, self.background_k = background, background_weight, background_k
        # whiten: shrinkage-whitening strength (retrieval/core/whiten.py); 0 = off. Whitening centres
        # on the anchors' mean too, whatever ``center`` says.
        self.whiten = whiten
        # style: an optional retrieval.core.style.StyleNormaliser, applied to anchors and inputs alike
        # before anything else (it is learned from anchors drawn several ways; not a parameter).
        self.ef, self.style = ef, style

    def check_params(self, n_anchors: int) -> None:
        """Raise InputError unless the parameters suit ``n_anchors`` anchors (call before costly encoding)."""
        if self.kind not in KINDS:
            raise InputError(f"expected kind in {KINDS}, got {self.kind!r}")
        if not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise InputError(f"expected an integer k >= 1, got {self.k!r}")
        if self.kind == "asif" and self.k > n_anchors:
            raise InputError(f"expected k <= number of anchors ({n_anchors}), got k={self.k}; "
                             f"lower k or add anchors")
        if not np.isfinite(self.p) or self.p <= 0:
            raise InputError(f"expected a finite power p > 0, got p={self.p!r}")
        if self.select not in SELECTS:
            raise InputError(f"expected select in {SELECTS}, got {self.select!r}")
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

    def fit(self, anchors: np.ndarray) -> "RelativeProjector":
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[0] == 0:
            raise InputError(f"expected anchors as a non-empty 2-D array, got shape {anchors.shape}")
        self.check_params(anchors.shape[0])
        self._blocks = None
        if self.background:
            own, bank = anchors[:-self.background], anchors[-self.background:]
            kw = dict(p=self.p, kind=self.kind, center=self.center, select=self.select, device=self.device,
                      ef=self.ef, style=self.style, whiten=self.whiten)
            self._blocks = (RelativeProjector(k=self.k, **kw).fit(own),
                            RelativeProjector(k=min(self.k, len(bank)) if self.background_k is None
                                              else self.background_k, **kw).fit(bank))
            self.n_anchors_, self.dim_ = anchors.shape
            return self
        styled = self._styled(anchors)
        # Centring on the anchors' mean: embeddings of one encoder share a large common direction
        # (EfficientNet features are all positive), which makes every cosine high and alike.
        self.mean_ = styled.mean(0) if self.center or self.whiten else np.zeros(anchors.shape[1], np.float32)
        # float64: a float32 product of a batch and of one row round differently (~1e-8), which would
        # make a query's vector depend on its batch-mates; in float64 that noise is gone after the
        # cast back to float32
        self.whitening_ = whitening_matrix(styled - self.mean_, self.whiten).astype(np.float64) if self.whiten else None
        self.anchors_ = self._prepare(anchors)
        self.n_anchors_, self.dim_ = anchors.shape
        self._flat = None
        self._heap = self.kind == "asif" and self.k < self.n_anchors_ and (
            self.select == "heap" or (self.select == "auto" and self.n_anchors_ >= HEAP_MIN_ANCHORS))
        if self._heap:
            try:
                import numba  # noqa: F401
            except ImportError:
                if self.select == "heap":
                    raise InputError("select='heap' needs numba; pip install numba")
                self._heap = False
        self._torch_anchors = None
        if self.select == "torch" and self.kind == "asif":
            import torch

            self._torch_anchors = torch.from_numpy(np.ascontiguousarray(self.anchors_)).to(self.device)
        if self.select in ("faiss", "hnsw"):
            try:
                import faiss
            except ImportError as exc:
                raise InputError(f"select={self.select!r} needs faiss; pip install faiss-cpu") from exc
            if self.select == "hnsw":
                self._flat = faiss.IndexHNSWFlat(self.dim_, 32, faiss.METRIC_INNER_PRODUCT)
                self._flat.hnsw.efConstruction = 80
                self._flat.hnsw.efSearch = max(int(self.ef), int(self.k))
            else:
                self._flat = faiss.IndexFlatIP(self.dim_)
            self._flat.add(np.ascontiguousarray(self.anchors_, np.float32))
        return self

    def _styled(self, x: np.ndarray) -> np.ndarray:
        """Unit rows, after the style normaliser when there is one (it unit-normalises its input)."""
        if self.style is not None:
            x = self.style.transform(x)
        return l2_normalise(x)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        if getattr(self, "_blocks", None):  # the own anchors' preprocessing
            return self._blocks[0]._prepare(x)
        x = self._styled(x)
        if not (self.center or self.whiten):
            return x
        x = x - self.mean_
        if self.whitening_ is not None:
            x = (x.astype(np.float64) @ self.whitening_).astype(np.float32)
        return l2_normalise(x)

    def _check_input(self, x) -> np.ndarray:
        if not hasattr(self, "n_anchors_"):
            raise InputError("this RelativeProjector is not fitted yet; call fit(anchor_vectors) first")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim_:
            raise InputError(f"expected vectors of width {self.dim_} (the anchors' width), got shape {x.shape}; "
                             f"were they made by the same encoder as the anchors?")
        return x

    def dense(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        """The dense cosine relative representation after the same preprocessing (the secondary score;
        against the own anchors only when there is a background bank)."""
        if getattr(self, "_blocks", None):
            return self._blocks[0].dense(self._check_input(x), dtype)
        return cosine_relative(self._prepare(self._check_input(x)), self.anchors_, dtype)

    def transform(self, x: np.ndarray, *, block: Optional[int] = None):
        x = self._check_input(x)
        if getattr(self, "_blocks", None):
            own, bank = (b.transform(x, block=block) for b in self._blocks)
            scale = np.float32(np.sqrt(self.background_weight))
            if self.kind == "cosine":
                return np.hstack([own, bank * scale])
            return sp.hstack([own, bank * scale], format="csr").astype(np.float32)
        if self.kind == "cosine":
            return self.dense(x)
        block = block or BLOCK
        if getattr(self, "_flat", None) is not None:
            parts = [self._faiss_topk(self._prepare(x[i:i + block])) for i in range(0, len(x), block)]
        elif getattr(self, "_torch_anchors", None) is not None:
            import torch

            parts = []
            for i in range(0, len(x), block):
                xb = torch.from_numpy(np.ascontiguousarray(self._prepare(x[i:i + block]))).to(self.device)
                vals, cols = torch.topk(xb @ self._torch_anchors.T, self.k, dim=1)
                cols, order = torch.sort(cols, dim=1)
                vals = torch.gather(vals, 1, order)
                parts.append(asif_weights(cols.cpu().numpy(), vals.cpu().numpy(), self.n_anchors_, self.p))
        elif getattr(self, "_heap", False):
            parts = self._heap_topk(x)
        else:
            parts = [asif_topk(self._prepare(x[i:i + block]) @ self.anchors_.T, self.k, self.p)
                     for i in range(0, len(x), block)]
        if not parts:
            return sp.csr_matrix((0, self.n_anchors_), dtype=np.float32)
        return sp.vstack(parts, format="csr").astype(np.float32)

    def _heap_topk(self, x: np.ndarray) -> list:
        """Exact top-k by a thread per core over blocks of rows (see HEAP_BLOCK)."""
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits

        from retrieval.core.topk import TopK

        def one(i: int) -> sp.csr_matrix:
            xb = np.ascontiguousarray(self._prepare(x[i:i + HEAP_BLOCK]))
            top, buf = TopK(len(xb), self.k), np.empty((len(xb), HEAP_COLS), np.float32)
            for c in range(0, self.n_anchors_, HEAP_COLS):
                block = self.anchors_[c:c + HEAP_COLS]
                if len(block) == HEAP_COLS:
                    np.matmul(xb, block.T, out=buf)
                    top.push(buf, c, serial=True)
                else:
                    top.push(xb @ block.T, c, serial=True)
            cols, vals = top.result()
            return asif_weights(cols, vals, self.n_anchors_, self.p)

        starts = range(0, len(x), HEAP_BLOCK)
        workers = min(len(starts), os.cpu_count() or 1)
        if workers <= 1:  # one block (a query, a small batch): BLAS may use its own threads
            return [one(i) for i in starts]
        # BLAS at one thread for the duration: the parallelism is ours, one block per core. The
        # limit is process-wide while it lasts (threadpoolctl), so it is held only inside this call.
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, starts))

    def _faiss_topk(self, x: np.ndarray) -> sp.csr_matrix:
        """FAISS's exact flat search fuses the GEMM with a per-row heap of the k best, so the
        similarity block never has to be scanned again (issue: selection cost, not GEMM, dominated)."""
        sims, cols = self._flat.search(np.ascontiguousarray(x, np.float32), self.k)
        order = np.argsort(cols, axis=1, kind="stable")  # CSR wants ascending anchor numbers
        return asif_weights(np.take_along_axis(cols, order, 1), np.take_along_axis(sims, order, 1),
                            self.n_anchors_, self.p)

    def transform_rows(self, x: np.ndarray):
        """Like :meth:`transform`, but each row is computed alone, in the same shape every time.

        A batched GEMM and a single-row product differ by ~1e-8, enough to flip anchors that tie in
        theory; queries go through here so that an answer never depends on its batch-mates.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) == 0:
            return self.transform(x)
        rows = [self.transform(x[i:i + 1]) for i in range(len(x))]
        return sp.vstack(rows, format="csr").astype(np.float32) if self.kind == "asif" else np.vstack(rows)

    def input_mean(self, x: np.ndarray, *, block: int = 65536) -> np.ndarray:
        """The mean of ``x``'s rows as this projector sees them (unit rows, after its style
        normaliser), in float64: what :meth:`centred_on` takes. In blocks, so a memory-mapped corpus
        is never copied whole."""
        x = self._check_input(x)
        return unit_mean(x, self._blocks[0].style if getattr(self, "_blocks", None) else self.style, block=block)

    def centred_on(self, mean: np.ndarray) -> "RelativeProjector":
        """A copy that centres its *inputs* on ``mean`` (see :meth:`input_mean`) instead of the
        anchors' mean; the anchors, their whitening and everything else stay as fitted.

        Inputs of another domain than the anchors (MNIST digits against scikit-learn's 8x8 ones,
        Twemoji drawings against Noto's) share an offset from the anchors' mean that pulls every one
        of them towards the same few anchors; centring them on their own domain's mean removes it
        (results/digits). Without centring or whitening nothing is centred, so this changes nothing.
        """
        mean = np.asarray(mean, np.float32)
        if not hasattr(self, "n_anchors_"):
            raise InputError("this RelativeProjector is not fitted yet; call fit(anchor_vectors) first")
        if mean.shape != (self.dim_,) or not np.all(np.isfinite(mean)):
            raise InputError(f"expected a finite mean vector of width {self.dim_} (the anchors' width), "
                             f"got shape {mean.shape}")
        out = copy.copy(self)
        if getattr(self, "_blocks", None):
            out._blocks = tuple(b.centred_on(mean) for b in self._blocks)
        elif self.center or self.whiten:
            out.mean_ = mean
        return out

    def fit_transform(self, anchors: np.ndarray, x: np.ndarray):
        return self.fit(anchors).transform(x)

    def get_params(self) -> dict:
        # "whiten" only when on: a manifest without it (every collection before whitening) means off.
        return {"kind": self.kind, "k": int(self.k), "p": float(self.p), "center": bool(self.center),
                **({"whiten": float(self.whiten)} if self.whiten else {}),
                **({"background": int(self.background), "background_weight": float(self.background_weight),
                    **({"background_k": int(self.background_k)} if self.background_k is not None else {})}
                   if self.background else {})}


BACKGROUND_PARAMS = ("background", "background_weight", "background_k")


def unit_mean(x: np.ndarray, style=None, *, block: int = 65536) -> np.ndarray:
    """The float64 mean of ``x``'s rows made unit (after ``style``, a StyleNormaliser, if given), in
    blocks so that a memory-mapped corpus is never copied whole: what a projector's inputs are centred
    on by :meth:`RelativeProjector.centred_on`."""
    x = np.asarray(x) if not hasattr(x, "shape") else x
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"expected at least one vector to take a mean of, got shape {tuple(x.shape)}")
    total = np.zeros(x.shape[1], np.float64)
    for i in range(0, len(x), block):
        part = np.asarray(x[i:i + block], np.float32)
        total += l2_normalise(style.transform(part) if style is not None else part).sum(0, dtype=np.float64)
    return total / len(x)


def without_background(params: dict) -> dict:
    """Projector parameters (``get_params``'s form) without the background bank's: for anchors that
    never carry it (pivot sets) or uses that leave it out (classification)."""
    return {key: v for key, v in params.items() if key not in BACKGROUND_PARAMS}


def pivot(projector: RelativeProjector, landing: np.ndarray, x: np.ndarray, *,
          center: Optional[bool] = None) -> np.ndarray:
    """Carry vectors into another space through parallel anchors: relativise ``x`` against the
    anchors ``projector`` was fitted on, then take the same weights over ``landing``, the anchors'
    other side (row i of both describes one thing), and L2-normalise.

    With ASIF weights this is a weighted mean of the anchors ``x`` resembles most: a sound of a dog
    lands near the captions of the dog-like sounds. ``center`` (default: as the projector) first
    removes the landing anchors' mean: every caption of a sound set says "the sound of …", and a
    weighted mean of many of them is mostly that shared phrase, which then finds loudspeakers and
    ears instead of dogs. Rows are computed alone (batch-independent).
    """
    landing = np.asarray(landing, np.float32)
    if landing.ndim != 2 or len(landing) != projector.n_anchors_:
        raise InputError(f"expected one landing vector per anchor ({projector.n_anchors_}), got shape {landing.shape}")
    if projector.center if center is None else center:
        landing = landing - landing.mean(0)
    w = projector.transform_rows(x)
    out = np.asarray(w @ landing, np.float32)
    return l2_normalise(out)
