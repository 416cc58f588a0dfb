"""Search backends behind one contract (:class:`retrieval.indexes.base.Index`), all checked by one
conformance test suite; one module per backend, and :func:`make_index` to build one from its spec.

* ``exact`` (:mod:`.exact`): brute force, the default: exact and, at the sizes of this release, fast.
* ``inverted``: postings per anchor for sparse relative vectors (:mod:`retrieval.indexes.inverted`): exact,
  and its cost grows with the items that share an anchor with the query, not with the collection;
  a query that shares anchors with nearly every item is answered from part of its postings
  (:mod:`.bounded`), or, when asked (``approximate``), approximately from its heaviest anchors'
  heaviest postings, the candidates scored exactly (:mod:`.heads`; tested against the exact search).
* ``torch``: brute force with torch on a device (a CUDA GPU when there is one); for GPUs without
  faiss-gpu. Like ``faiss``, it re-ranks ``k + TIE_MARGIN`` candidates.
* ``faiss``: a FAISS index (factory string, default ``"Flat"``, inner product) over the densified
  vectors, on GPU when the installed faiss sees one. Ties beyond its candidate list cannot be
  re-ranked, so it asks FAISS for ``k + TIE_MARGIN`` candidates. With ``rerank=R`` it asks for R
  times as many and scores them exactly against the stored vectors (which may be memory-mapped):
  the candidate stage of a compressed index (IVF-PQ) followed by an exact re-rank.
"""

from __future__ import annotations

from typing import Dict

from retrieval.errors import UnknownNameError
from retrieval.indexes.base import QUERY_BLOCK, TIE_MARGIN, Hits, Index
from retrieval.indexes.exact import ExactIndex
from retrieval.indexes.faiss_index import FaissIndex
from retrieval.indexes.inverted import InvertedIndex
from retrieval.indexes.torch_index import TorchIndex

BACKENDS = {"exact": ExactIndex, "faiss": FaissIndex, "inverted": InvertedIndex, "torch": TorchIndex}


def make_index(spec: Dict) -> Index:
    """Build an empty index from its manifest spec, e.g. ``{"backend": "faiss", "factory": "Flat"}``
    (the inverse of :meth:`Index.spec`)."""
    backend = spec.get("backend")
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown index backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "faiss":
        return FaissIndex(spec.get("factory", "Flat"), spec.get("use_gpu"), spec.get("params", ""),
                          spec.get("tie_margin", TIE_MARGIN), spec.get("rerank", 0))
    if backend == "inverted":
        return InvertedIndex(spec.get("dtype", "float16"), items=spec.get("items"), bounds=spec.get("bounds", False),
                             approximate=spec.get("approximate"))
    if backend == "torch":
        return TorchIndex(spec.get("device"))
    return ExactIndex()


from_spec = make_index

__all__ = ["BACKENDS", "QUERY_BLOCK", "TIE_MARGIN", "ExactIndex", "FaissIndex", "Hits", "Index", "InvertedIndex",
           "TorchIndex", "from_spec", "make_index"]
