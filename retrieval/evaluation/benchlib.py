"""Shared by the benchmark and experiment scripts (scripts/): best-of timing, paired speed ratios,
recall against an exact answer, and the report written whole (a temporary file renamed into place).
A module of the package, so that scripts import it as they import the product."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

import numpy as np


def best_of(fn: Callable, repeat: int = 3) -> Tuple[float, object]:
    """(least disturbed of ``repeat`` wall times, the last result): these machines are shared and noisy."""
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def paired(base: Callable, fn: Callable, repeat: int = 7) -> Tuple[float, float, float]:
    """(median, lowest, highest) of ``repeat`` ratios base time / fn time, each from a run of
    ``base`` and a run of ``fn`` back to back. The host's load drifts over seconds; a ratio taken
    from neighbouring runs cancels most of that drift, where two separate best-ofs do not."""
    ratios = []
    for _ in range(repeat):
        t = time.perf_counter()
        base()
        tb = time.perf_counter() - t
        t = time.perf_counter()
        fn()
        ratios.append(tb / (time.perf_counter() - t))
    return float(np.median(ratios)), float(min(ratios)), float(max(ratios))


def recall_at(got: Sequence, truth: Sequence) -> float:
    """Mean share of each row of ``truth`` (exact ids) that ``got`` also contains."""
    return float(np.mean([len(set(np.asarray(g).tolist()) & set(np.asarray(t).tolist())) / max(1, len(t))
                          for g, t in zip(got, truth)]))


def emoji_data_args(ap) -> None:
    """The options of the scripts that prepare the emoji data (retrieval.datasets.emoji.prepare)."""
    ap.add_argument("--data", default="indexes/.emoji-data")
    ap.add_argument("--limit", type=int, default=None, help="the first N concepts by stable hash (default: all)")


def inverted_args(ap, queries: int, repeat: int = 2, k: bool = True) -> None:
    """The options every inverted index benchmark takes: the collection, how many of its texts to
    query with, each query's repetitions (its best time kept), top ``-k`` and the side searched."""
    ap.add_argument("index")
    ap.add_argument("--queries", type=int, default=queries)
    ap.add_argument("--repeat", type=int, default=repeat)
    if k:
        ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--modality", default="image", help="the side whose inverted index is searched")


def inverted_side(folder: str, modality: str, need_bounds: bool = False):
    """(the collection, its inverted index on ``modality``'s side set to one thread), or an error
    message saying what was found instead: the inverted index's benchmarks start here."""
    from retrieval.api import open_collection
    from retrieval.errors import RetrievalError
    from retrieval.indexes.inverted import InvertedIndex

    try:
        col = open_collection(folder, verify=False)
    except RetrievalError as exc:
        return None, f"error: {exc}"
    idx = col.sides[modality].index
    if not isinstance(idx, InvertedIndex) or (need_bounds and idx.bounds is None):
        what = type(idx).__name__ + (" without bounds (build it again)" if isinstance(idx, InvertedIndex) else "")
        return None, f"expected an inverted index{' with bounds' if need_bounds else ''} on the {modality} side, got {what}"
    idx.threads = 1
    return (col, idx), None


def text_queries(col, count: int, spread: bool = True):
    """``count`` of the collection's distinct texts (evenly spaced over them, or the first ones),
    encoded by its text encoder and made relative as a text search makes them: a CSR matrix."""
    import scipy.sparse as sp

    texts = list(dict.fromkeys(col.texts["text"]))
    texts = ([texts[i] for i in np.linspace(0, len(texts) - 1, min(count, len(texts))).astype(int)] if spread
             else texts[:count])
    return sp.csr_matrix(col.projectors["text"].transform_rows(col.encoder("text").encode(texts)), dtype=np.float32)


def report(lines: Sequence[str], out: Optional[str], data: Optional[dict] = None) -> str:
    """Print the Markdown report and write it to ``out``; ``data`` (the same numbers, unformatted)
    goes beside it as ``out`` with a ``.json`` suffix, so that tests and tools read numbers rather
    than parse tables."""
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            _write_whole(Path(out).with_suffix(".json"), json.dumps(data, indent=2, default=float) + "\n")
        _write_whole(Path(out), text + "\n")
    return text


def _write_whole(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: a run that dies mid-write leaves the old report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def out_args(doc: str, configure: Optional[Callable] = None):
    """(arguments, start time) of an experiment script: its docstring's first line as the description
    and ``--out`` (where ``report`` writes); ``configure(parser)`` adds the script's own options."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", default=None, help="write the Markdown report here (and its numbers beside it as .json)")
    if configure is not None:
        configure(ap)
    return ap.parse_args(), time.time()


def classifier_sides(params: dict, text_anchors: np.ndarray, image_anchors: np.ndarray, bank=None) -> dict:
    """The ``image`` and ``text`` sides of a ZeroShotClassifier from a projector in keyword form (the
    flat parameters experiments sweep, e.g. ``{"k": 256, "p": 2.0, "center": True, "whiten": 9.0}``),
    with ``bank`` = (texts, images) of a background bank as its block when given. Pass
    ``keep_whitening=True`` with them: the parameters already say whether to whiten."""
    from retrieval.api.classify import Side
    from retrieval.build.background import DEFAULT_WEIGHT
    from retrieval.core.projector import spec_from_params

    if bank is not None:
        n = len(bank[0])
        params = dict(params, background=n, background_weight=DEFAULT_WEIGHT,
                      background_k=min(params.get("k", 64), n))
    spec = spec_from_params(params)
    bt, bi = (None, None) if bank is None else bank
    return {"image": Side(spec, image_anchors, bi), "text": Side(spec, text_anchors, bt)}
