"""The facade: the Python API that the CLI (and later the server) call. One object, one collection.

>>> from retrieval import Collection
>>> col = Collection.open("indexes/demo")                       # doctest: +SKIP
>>> col.search("an emoji of a red apple", k=5)[0].path           # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from retrieval.api.classify import DEFAULT_TEMPLATES, Classification, CorpusSample, Side, ZeroShotClassifier
from retrieval.api.head_signals import ClassHead
from retrieval.api.sharded import ShardedCollection
from retrieval.api.stitch import Stitched, stitch
from retrieval.build.builder import build_collection
from retrieval.build.reanchor import reanchor
from retrieval.core.caption_match import CaptionMatch, promote
from retrieval.core.normalise import l2_normalise
from retrieval.core.projector import Projector, pivot
from retrieval.core.ranking import TIE_EPS, rank_candidates, topk_with_ties
from retrieval.core.rowcache import DEFAULT_BYTES as DENSE_CACHE_BYTES
from retrieval.core.rowcache import RowCache
from retrieval.encoders import Encoder, check_as_built, load_encoder, load_encoder_as_built
from retrieval.encoders.vectors import space_of
from retrieval.errors import InputError, UnsupportedQueryError
from retrieval.indexes import QUERY_BLOCK, ExactIndex, Hits, make_index
from retrieval.media.images import ImageLike
from retrieval.media.tables import check_texts, guess_modality
from retrieval.planning.planner import Bridge, Plan, plan
from retrieval.store import projectors as stored
from retrieval.store.filters import allowed_rows
from retrieval.store.filters import columns as filter_columns
from retrieval.store.format import read_manifest
from retrieval.store.projectors import summary as projector_summary
from retrieval.store.reader import RowMap, StoredCollection
from retrieval.store.sharded import is_sharded


@dataclass
class Hit:
    """One search result. ``secondary`` is the dense relative cosine used to break ties (NaN if unused)."""

    rank: int
    id: int
    score: float
    secondary: float
    kind: str                      # the target modality: "image", "audio" or "text"
    path: Optional[str] = None     # item results (an image or a sound file)
    caption: Optional[str] = None
    label: Optional[str] = None
    source: Optional[str] = None   # text results: "corpus" caption or "anchor" caption
    item_id: Optional[int] = None  # text results from a corpus caption: the item it describes
    matched: Optional[str] = None  # item results found by their own caption: "caption" or "keywords"

    def text_key(self) -> str:
        """What makes two text results the same text (spacing and case aside)."""
        return " ".join((self.caption or "").split()).casefold()

    def to_dict(self) -> Dict:
        # every key always present (null when not applicable): a stable schema; plain Python values
        d = dict(vars(self))  # the fields in their order: a plain dataclass holds nothing else (a server's hot path)
        d["score"] = float(self.score)
        d["secondary"] = None if math.isnan(self.secondary) else float(self.secondary)
        return d


HIT_FIELDS = tuple(f.name for f in fields(Hit))

# Classifiers an opened collection keeps, the most recently built (Collection.classifier).
KEPT_CLASSIFIERS = 8


class Collection(StoredCollection):
    """A built collection, opened read-only. Encoders load lazily, on the first query that needs them.

    ``modality`` is what the items are (``"image"`` or ``"audio"``); texts (corpus and anchor
    captions) are the other searchable side.
    """

    def __init__(self, folder: Path, manifest: Dict, *, device: str = "cpu",
                 encoders: Optional[Dict[str, Union[str, Encoder]]] = None):
        super().__init__(folder, manifest, device=device)
        self.stitched: Dict[str, Stitched] = {}  # modality -> a query encoder other than the build's (stitch.py)
        self.timer = None  # optional callable(stage, seconds): per-stage query timings (encode, relativise, search)
        # items' dense relative vectors for tie-breaking, kept up to this many bytes a side (core/rowcache.py)
        self.dense_cache_bytes = DENSE_CACHE_BYTES
        self._dense_cache: Dict[str, RowCache] = {}
        self._encoders: Dict[str, Encoder] = {}
        for modality, enc in (encoders or {}).items():
            self._check_encoder(modality, enc)
        # Collections from before translators existed have only the anchor bridge.
        bank = manifest["anchors"].get("background")  # named beside the anchors in EXPLAIN
        own = manifest["anchors"].get("self") or {}
        self.bridges = [Bridge("anchors", (self.modality, "text"), manifest["anchors"].get("source", "")
                               + (f" and {own['count']} captioned corpus items" if own.get("kept") else "")
                               + (f" and background bank {bank['source']} ({bank['count']})" if bank else ""))]
        self.bridges += [Bridge("anchors", tuple(pv["modalities"]), pv.get("source", ""), indexed=False)
                         for pv in manifest.get("pivots", [])]
        for b in manifest.get("bridges", []):
            if b.get("kind") in ("translator", "labels"):
                self.bridges.append(Bridge(b["kind"], tuple(b["modalities"]), b.get("name", "")))
        captioned = sum(1 for s in self.texts["source"] if s == "corpus")
        if captioned:  # text queries also match the items' own captions (core/caption_match.py)
            self.bridges.append(Bridge("captions", ("text", self.modality), f"{captioned} item captions"))
        self._caption_match: Optional[CaptionMatch] = None
        self._scaled: Dict[str, ExactIndex] = {}
        self._last_filter: tuple = (None, None)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, folder, *, device: str = "cpu", image_encoder: Optional[Union[str, Encoder]] = None,
             text_encoder: Optional[Union[str, Encoder]] = None, audio_encoder: Optional[Union[str, Encoder]] = None,
             verify: bool = True) -> "Collection":
        """Open a collection folder after checking its manifest and checksums.

        ``image_encoder`` / ``text_encoder`` / ``audio_encoder`` override how queries are encoded; they
        must be the manifest's encoders (same spec and width), or the vectors would not be comparable.
        """
        if is_sharded(folder):  # a distributed build's shards, searched as one (same search API)
            return ShardedCollection.open(folder, device=device, verify=verify)
        manifest = read_manifest(Path(folder), verify=verify)
        given = (("image", image_encoder), ("text", text_encoder), ("audio", audio_encoder))
        encoders = {m: e for m, e in given if e is not None}
        return cls(Path(folder), manifest, device=device, encoders=encoders)

    @classmethod
    def build(cls, corpus, anchors, out, **kwargs) -> "Collection":
        """Build (see :func:`retrieval.build.builder.build_collection` for options) and open the result."""
        return cls.open(build_collection(corpus, anchors, out, **kwargs), device=kwargs.get("device", "cpu"))

    def add(self, corpus, **kwargs) -> "Collection":
        """Append the files of ``corpus`` (see :func:`retrieval.build.update.add_items`); returns the
        collection re-opened, with the new items searchable. Only the new files are encoded."""
        from retrieval.build.update import add_items

        add_items(self.folder, corpus, device=self.device, **kwargs)
        return Collection.open(self.folder, device=self.device, **self._given_encoders())

    def delete(self, ids) -> "Collection":
        """Remove items by id (see :func:`retrieval.build.update.delete_items`); returns the collection re-opened."""
        from retrieval.build.update import delete_items

        delete_items(self.folder, ids)
        return Collection.open(self.folder, device=self.device, **self._given_encoders())

    def reanchor(self, anchors, out=None, **options) -> "Collection":
        """Recompute against new ``anchors`` without encoding the items again (see
        :func:`retrieval.build.reanchor.reanchor`); returns the result opened (in place by default)."""
        path = reanchor(self.folder, anchors, out, device=self.device, **options)
        return Collection.open(path, device=self.device, **self._given_encoders())

    def _given_encoders(self) -> Dict:
        return {f"{m}_encoder": e for m, e in self._encoders.items()}

    def _check_encoder(self, modality: str, enc: Union[str, Encoder]) -> None:
        if modality not in self.manifest["encoders"]:
            raise InputError(f"expected an encoder for one of this collection's modalities "
                             f"{sorted(self.manifest['encoders'])}, got one for {modality!r}")
        want = self.manifest["encoders"][modality]
        spec = enc if isinstance(enc, str) else enc.name
        if spec == space_of(want["spec"]):  # the model that made the brought vectors: the same space
            self._same_space(modality, enc, want)
            return
        if spec != want["spec"]:  # another encoder: its queries reach the collection through the anchors
            enc = load_encoder(enc, modality, device=self.device) if isinstance(enc, str) else enc
            if enc.modality != modality:
                raise InputError(f"expected a {modality} encoder to stitch to this collection, got the "
                                 f"{enc.modality} encoder {enc.name!r}")
            self.stitched[modality] = stitch(self.folder, self.manifest, modality, enc, self.anchor_vectors[modality])
            self._encoders[modality] = enc
            return
        if isinstance(enc, Encoder):
            if enc.dim != want["dim"] or enc.modality != modality:
                raise InputError(f"expected a {modality} encoder of dimension {want['dim']}, got {enc.modality} "
                                 f"encoder {enc.name!r} of dimension {enc.dim}")
            self._encoders[modality] = check_as_built(enc, want)

    def _same_space(self, modality: str, enc: Union[str, Encoder], want: Dict) -> None:
        """Take ``enc``, named as the ``vectors:NAME`` side's NAME, as that side's own encoder: its
        queries need no stitching. Only its width can be checked: the name is the user's word that
        the vectors came from it."""
        enc = load_encoder(enc, modality, device=self.device) if isinstance(enc, str) else enc
        if enc.modality != modality or enc.dim != want["dim"]:
            raise InputError(f"expected the {modality} encoder that made this collection's {want['spec']!r} vectors "
                             f"(width {want['dim']}), got the {enc.modality} encoder {enc.name!r} of width {enc.dim}")
        self._encoders[modality] = enc

    def _require(self, modality: str) -> None:
        if modality not in self.manifest["encoders"]:
            raise UnsupportedQueryError(f"expected a query in one of this collection's modalities {sorted(self.manifest['encoders'])}, "
                             f"got {modality!r}; add {modality}-text anchors with 'retrieval build --pivot-anchors'")

    def encoder(self, modality: str) -> Encoder:
        self._require(modality)
        if modality not in self._encoders:
            self._encoders[modality] = load_encoder_as_built(self.manifest, modality, device=self.device)
        return self._encoders[modality]

    # ---- search -------------------------------------------------------------------------------
    def _target(self, target: Optional[str]) -> str:
        target = self.modality if target in (None, "items") else target
        if target not in self.sides:
            raise UnsupportedQueryError(f"expected a target among {sorted(self.sides)} (or 'items'), got {target!r}")
        return target

    def plan(self, query_modality: str, target: Optional[str] = None, route: Optional[str] = None,
             captions: bool = True) -> Plan:
        """The route a query would take, with every alternative's estimates (``.explain()`` prints it).
        ``target`` defaults to the collection's items; ``captions=False``: without the caption match."""
        target = self._target(target)
        spaces = {m: e["spec"] for m, e in self.manifest["encoders"].items()}
        bank = self.manifest["anchors"].get("background", {}).get("count", 0)  # relativised against too
        sizes = {"items": len(self.sides[target].abs), "anchors": self.manifest["anchors"]["count"] + bank,
                 "k": projector_summary(self.manifest).get("k", self.manifest["anchors"]["count"]),
                 **{f"dim_{m}": e["dim"] for m, e in self.manifest["encoders"].items()},
                 **{f"anchors_{pv['modalities'][0]}_text": pv["count"] for pv in self.manifest.get("pivots", [])}}
        st = self.stitched.get(query_modality)
        return plan(query_modality, target, spaces, self.bridges, route=route, sizes=sizes,
                    query_encoder=st.encoder.name if st else None, captions=captions,
                    measured=(self.manifest.get("tuning") or {}).get("routes"))

    def search(self, query: Union[str, ImageLike], *, k: int = 10, modality: Optional[str] = None,
               target: Optional[str] = None, route: Optional[str] = None, where: Optional[str] = None,
               captions: bool = True) -> List[Hit]:
        """Search with one query: a path to an existing image or sound file is that, a PIL image an
        image, any other string text. ``target`` defaults to the collection's items.

        >>> col.search("a red apple", k=3)                      # doctest: +SKIP
        >>> col.search("query.png", target="text", k=3)         # doctest: +SKIP
        >>> col.search("dog-bark.wav", k=3)                     # doctest: +SKIP
        >>> col.search("a cat", where="year >= 2020 AND label != 'toy'")   # doctest: +SKIP

        ``where`` filters the target's rows by their stored columns (the corpus table's metadata;
        :mod:`retrieval.store.filters`) before the top k is cut: k results whenever k rows match.

        A text query to the items of a partly captioned collection also matches the items' own captions
        (:mod:`retrieval.core.caption_match`): an item whose caption the query repeats, or names every
        word of, comes first (``Hit.matched`` says so). ``captions=False`` searches cross-modally only.
        """
        return self.search_many([query], k=k, modality=modality or guess_modality(query), target=target, route=route,
                                where=where, captions=captions)[0]

    def search_many(self, queries: Sequence, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                    route: Optional[str] = None, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                    where: Optional[str] = None, captions: bool = True) -> List[List[Hit]]:
        """Answer many queries of one modality with one encoder load and one batched encode."""
        q = self.encode_queries(queries, k=k, modality=modality, target=target, route=route, batch_size=batch_size,
                                show_progress_bar=show_progress_bar, where=where)
        return self.search_vectors(q, k=k, modality=modality, target=target, route=route, where=where,
                                   captions=captions, texts=list(queries) if modality == "text" else None)

    def encode_queries(self, queries: Sequence, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                       route: Optional[str] = None, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                       where: Optional[str] = None) -> np.ndarray:
        """The first half of :meth:`search_many`: the queries checked and encoded, for ``search_vectors``
        (a server encodes one batch while it searches the one before)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"expected k >= 1, got {k!r}")
        target = self._target(target)
        # Everything that can be refused is, before a model loads (seconds): the modality (its error says
        # how to add one), the route, the filter, and blank text.
        self._require(modality)
        self.plan(modality, target, route)
        if where is not None:
            self._allowed(where, target)
        if modality == "text":
            check_texts(queries)
        encoder = self.encoder(modality)
        with self._stage("encode"):
            return encoder.encode(list(queries), batch_size=batch_size, show_progress_bar=show_progress_bar)

    def _allowed(self, where: Optional[str], target: str) -> Optional[np.ndarray]:
        """The target's rows that ``where`` keeps (None: no filter)."""
        if where is None:
            return None
        # The last filter's rows are kept: search_many checks a filter before encoding and
        # search_vectors applies it, and a server sees the same filter again and again; an opened
        # collection does not change, so the rows stay right.
        key = (where, target)
        if self._last_filter[0] != key:
            self._last_filter = (key, allowed_rows(where, self.sides[target].meta))
        return self._last_filter[1]

    def filter_columns(self, target: Optional[str] = None) -> List:
        """(name, type) of the columns a ``where`` filter may name for ``target``."""
        return filter_columns(self.sides[self._target(target)].meta)

    def search_vectors(self, vectors, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                       route: Optional[str] = None, where: Optional[str] = None, captions: bool = True,
                       texts: Optional[Sequence[str]] = None) -> List[List[Hit]]:
        """Search with embeddings already made by this collection's ``modality`` encoder (rows are
        L2-normalised here). ``texts``: the text queries' words, for the caption match's keywords
        (without them, captions are matched by cosine only)."""
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"expected k >= 1, got {k!r}")
        self.check_files()
        target = self._target(target)
        if modality not in self.manifest["encoders"]:
            raise UnsupportedQueryError(f"expected vectors of one of this collection's modalities "
                             f"{sorted(self.manifest['encoders'])}, got {modality!r}")
        st = self.stitched.get(modality)
        q = self._checked_vectors(vectors, modality, st.encoder.dim if st else None, st.encoder.name if st else None)
        p = self.plan(modality, target, route, captions)
        with self._stage("filter"):
            allowed = self._allowed(where, target)
        if p.route == "pivot":
            with self._stage("relativise"):
                q, modality = self._pivot(q, modality), p.via
        elif p.route == "stitch":  # into the collection's own space, then its best route from there
            with self._stage("relativise"):
                q = l2_normalise(st.translator.transform(q))
            st = None
        projector = st.projector if st is not None else None
        route = p.then if p.route in ("pivot", "stitch") else p.route
        if target == "text":
            return self._distinct_texts(lambda depth: self._run(route, q, modality, target, depth, allowed, projector),
                                        k, len(self.texts["text"]) if allowed is None else len(allowed))
        if p.captions:
            return self._with_captions(q, texts, k, allowed, lambda depth: self._run(route, q, modality, target, depth,
                                                                                  allowed, projector))
        return [self._hits(h, target) for h in self._run(route, q, modality, target, k, allowed, projector)]

    def _checked_vectors(self, vectors, modality: str, dim: Optional[int] = None,
                         spec: Optional[str] = None) -> np.ndarray:
        """Query vectors of ``modality`` as unit float32 rows, or the error that says what was expected:
        ``dim`` wide (by default the width of the collection's own ``modality`` encoder, ``spec``), finite,
        and not all zeros (a direction to compare)."""
        dim = dim or self.manifest["encoders"][modality]["dim"]
        spec = spec or self.manifest["encoders"][modality]["spec"]
        q = np.asarray(vectors, dtype=np.float64)  # float64 first: 1e300 is a direction, not an overflow
        if q.ndim != 2 or q.shape[1] != dim:
            raise UnsupportedQueryError(f"expected {modality} vectors of width {dim} (the {spec} encoder's), one a "
                                        f"row, got an array of shape {q.shape}")
        if not np.all(np.isfinite(q)):
            raise InputError(f"expected finite {modality} vectors, got NaN or infinite values")
        zero = np.flatnonzero(~np.any(q, axis=1))
        if len(zero):  # no direction: nothing to compare
            raise InputError(f"expected {modality} vectors that are not all zeros, got {len(zero)} such row(s): "
                             f"{zero[:10].tolist()}")
        q = q / np.abs(q).max(axis=1, keepdims=True)  # no overflow in the norm below
        return l2_normalise(q)

    def caption_match(self) -> CaptionMatch:
        """The items' own captions as a :class:`CaptionMatch` (fitted once per opened collection)."""
        if self._caption_match is None:
            rows = [i for i, s in enumerate(self.texts["source"]) if s == "corpus"]
            items = [self.item_row(self.texts["item_id"][i]) for i in rows]
            self._caption_match = CaptionMatch.fit(np.asarray(self.sides["text"].abs[rows], np.float32),
                                                   [self.texts["text"][i] for i in rows], items)
        return self._caption_match

    def _with_captions(self, q: np.ndarray, texts, k: int, allowed, run) -> List[List[Hit]]:
        """The route's top k, with the items whose own caption matches the query moved first."""
        with self._stage("captions"):
            matches = self.caption_match().match(q, texts, allowed)
        hits = run(k + min(k, max(len(m.rows) for m in matches)))
        out = []
        for m, h in zip(matches, hits):
            ids, scores, secondary, how = promote(m, h.ids, h.scores, h.secondary, k)
            out.append(self._hits(Hits(ids, scores, secondary), self.modality, matched=how))
        return out

    def _distinct_texts(self, run, k: int, n: int) -> List[List[Hit]]:
        """Text results with each text once: a corpus caption that is also an anchor caption (or two
        items captioned alike) would otherwise fill the list twice. The first, best-ranked occurrence
        is kept (a corpus caption before an anchor's of the same score: it names its item); the
        search is deepened until k distinct texts are found or the texts run out."""
        depth = min(n, 2 * k + 10)
        while True:
            out = []
            for h in run(depth):
                seen, kept = set(), []
                for hit in self._hits(h, "text"):
                    if hit.text_key() not in seen:
                        seen.add(hit.text_key())
                        kept.append(dataclasses.replace(hit, rank=len(kept) + 1))
                out.append(kept[:k])
            if depth >= n or all(len(r) >= k for r in out):
                return out
            depth = min(n, 2 * depth)

    def _stage(self, name: str):
        """Times a stage of a query for ``self.timer(stage, seconds)``, when one is set (the server's metrics)."""
        import contextlib
        import time

        timer = getattr(self, "timer", None)
        if timer is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def timed():
            t = time.perf_counter()
            try:
                yield
            finally:
                timer(name, time.perf_counter() - t)
        return timed()

    def _run(self, route: str, q: np.ndarray, modality: str, target: str, k: int,
             allowed: Optional[np.ndarray] = None, projector: Optional[Projector] = None) -> List[Hits]:
        """``projector``: the query side's, when the query was encoded by a stitched encoder."""
        if route == "absolute":
            with self._stage("search"):
                return self.sides[target].abs_index().search(q, k, allowed=allowed)
        if route == "relative":
            return self._relative(q, modality, target, k, allowed=allowed, projector=projector)
        if route == "translation":
            with self._stage("search"):
                return self._translated(q, modality, target, k, allowed)
        if route == "relative+labels":
            return self._labelled(q, modality, target, k, allowed)
        return self._fused(q, modality, target, k, allowed=allowed)

    def _labelled(self, q: np.ndarray, modality: str, target: str, k: int,
                  allowed: Optional[np.ndarray] = None) -> List[Hits]:
        """The relative route's ASIF score plus ``weight`` x the label bridge's cosine, exactly.

        The relative index gives the best ``depth`` items by ASIF score; an item outside them scores
        at most the depth-th ASIF score plus its own label term, so every item whose label term
        could lift it into the top k is scored too (its ASIF score from its stored embedding). An index
        that scores every item anyway (the exact one) is asked for all of them instead."""
        side, w = self.sides[target], float(self.manifest["labels"]["weight"])
        proj, t_proj = self.projectors[modality], self.projectors[target]
        with self._stage("relativise"):
            dense = self._query_dense(proj, q)
        if isinstance(side.index, ExactIndex):
            return self._labelled_everywhere(q, proj, dense, target, w, k, allowed)
        n = len(side.abs) if allowed is None else len(allowed)
        depth = min(n, max(4 * k, 100))
        # The first list's own order is not used: the final ranking below breaks ties itself, and the
        # items tied at its end that it leaves out are scored as "extra" items when they could matter.
        first = self._relative(q, modality, target, depth, allowed=allowed, tie_break=False)
        out = []
        with self._stage("labels"):
            for r, h in enumerate(first):
                lab = np.asarray(self.item_labels @ q[r].astype(np.float32), np.float64)
                ids = np.asarray(h.ids, np.int64)
                combined = np.asarray(h.scores, np.float64) + w * lab[ids]
                if len(ids) < n:  # items outside the list: ASIF score <= the list's last
                    kth = np.sort(combined)[::-1][min(k, len(combined)) - 1]
                    reach = h.scores[-1] + w * lab >= kth - TIE_EPS
                    reach[ids] = False  # the list's own items (a mask: setdiff1d sorted them on every query)
                    extra = np.flatnonzero(reach)
                    if allowed is not None:
                        extra = np.intersect1d(extra, allowed)
                    if len(extra):
                        prim = t_proj.transform(np.asarray(side.abs[extra])) @ proj.transform_rows(q[r:r + 1]).T
                        prim = np.asarray(prim.todense() if hasattr(prim, "todense") else prim, np.float64).ravel()
                        ids = np.concatenate([ids, extra])
                        combined = np.concatenate([combined, prim + w * lab[extra]])
                out.append(Hits(*rank_candidates(ids, combined, k,
                                                 lambda c, r=r: self._dense_rows(target)(c) @ dense[r])))
        return out

    def _labelled_everywhere(self, q: np.ndarray, proj, dense: np.ndarray, target: str, w: float, k: int,
                             allowed: Optional[np.ndarray]) -> List[Hits]:
        """:meth:`_labelled` on an index that scores every item anyway (the exact one): every item's
        combined score at once, without the list and the reach the general path needs for an index
        that cannot (blocks of queries as the index's own search takes them, to bound the scores)."""
        with self._stage("relativise"):
            q_rel = proj.transform_rows(q)
        out = []
        for start in range(0, len(q), QUERY_BLOCK):
            with self._stage("search"):
                block = self.sides[target].index.scores(q_rel[start:start + QUERY_BLOCK])
            with self._stage("labels"):
                for j, asif in enumerate(block):
                    r = start + j
                    combined = asif.astype(np.float64) + w * np.asarray(
                        self.item_labels @ q[r].astype(np.float32), np.float64)
                    def tie(c, r=r):
                        return self._dense_rows(target)(c) @ dense[r]
                    out.append(Hits(*(topk_with_ties(combined, k, tie) if allowed is None
                                      else rank_candidates(allowed, combined[allowed], k, tie))))
        return out

    def fill_dense_rows(self) -> None:
        """Computes every item's dense relative vector (the tie-break) now, for each target whose rows
        fit the cache's budget (``dense_cache_bytes``): a server's first queries then cost what later
        ones do."""
        for target in self.sides:
            self._dense_rows(target).fill()

    def _dense_rows(self, target: str) -> RowCache:
        """The ``target`` items' dense relative vectors (float64), kept once computed (core/rowcache.py)."""
        cache = self._dense_cache.get(target)
        if cache is None:  # setdefault: a server's filling thread and a query may both get here first
            side, t_proj = self.sides[target], self.projectors[target]
            cache = self._dense_cache.setdefault(target, RowCache(
                lambda ids: t_proj.dense(np.asarray(side.abs[ids]), np.float64), self.dense_cache_bytes,
                n_rows=len(side.abs)))
        return cache

    def _pivot(self, q: np.ndarray, modality: str) -> np.ndarray:
        """Carry queries through a pivot anchor set into text (see :func:`retrieval.core.relative.pivot`)."""
        proj, land = self.pivots[modality]
        return pivot(proj, land, q)

    @staticmethod
    def _query_dense(proj, q: np.ndarray) -> np.ndarray:
        """The queries' dense relative vectors (the tie-break), batch-independent (``dense_rows``)."""
        return proj.dense_rows(q)

    def _relative(self, q: np.ndarray, modality: str, target: str, k: int, extra: int = 0,
                  allowed: Optional[np.ndarray] = None, projector: Optional[Projector] = None,
                  tie_break: bool = True) -> List[Hits]:
        """The relative route's top k (+ ``extra``); ``tie_break=False``: equal scores in storage order."""
        side = self.sides[target]
        proj = projector or self.projectors[modality]
        with self._stage("relativise"):
            q_rel = proj.transform_rows(q)  # batch-independent, see retrieval.core.step.transform_rows
            q_dense = self._query_dense(proj, q) if tie_break else None

        def secondary(row: int, cand: np.ndarray) -> np.ndarray:
            # float64: the same candidate gets the same score whichever other candidates a backend passes
            return self._dense_rows(target)(cand) @ q_dense[row]

        with self._stage("search"):
            return side.index.search(q_rel, k + extra, secondary if tie_break else None, allowed=allowed)

    def _translated(self, q: np.ndarray, modality: str, target: str, k: int,
                    allowed: Optional[np.ndarray] = None) -> List[Hits]:
        """Translate into the target space; cosine there in the anchors' standard-scaled coordinates,
        as the translator was fitted (and as the evaluation measured it)."""
        t = self.translators[(modality, target)]
        if target not in self._scaled:
            spec = self.manifest.get("dense_indexes", {}).get(f"{target}_translated")
            # A re-ranking index scores its candidates in the scaled coordinates, computed per
            # candidate from the stored embeddings rather than held as a second copy of them.
            scaled = RowMap(self.sides[target].abs, t.scale_target)
            self._scaled[target] = (make_index(spec).load(str(self.folder), f"{target}_translated", scaled) if spec
                                    else ExactIndex().add(t.scale_target(self.sides[target].abs)))
        return self._scaled[target].search(t.transform_scaled(q), k, allowed=allowed)

    def _fused(self, q: np.ndarray, modality: str, target: str, k: int, c: float = 60.0,
               allowed: Optional[np.ndarray] = None) -> List[Hits]:
        """Reciprocal-rank fusion over the union of both routes' top lists (depth 4k, at least 100);
        an item missing from one list counts as ranked just past its end."""
        depth = max(4 * k, 100)
        out = []
        for rel, tr in zip(self._relative(q, modality, target, depth, allowed=allowed),
                           self._translated(q, modality, target, depth, allowed)):
            ranks_r = {int(i): r for r, i in enumerate(rel.ids)}
            ranks_t = {int(i): r for r, i in enumerate(tr.ids)}
            cand = np.array(sorted(set(ranks_r) | set(ranks_t)), np.int64)
            fused = np.array([1 / (c + 1 + ranks_r.get(i, len(rel.ids))) + 1 / (c + 1 + ranks_t.get(i, len(tr.ids)))
                              for i in cand.tolist()])
            out.append(Hits(*rank_candidates(cand, fused, k)))
        return out

    def _hits(self, h: Hits, target: str, matched: Optional[Sequence] = None) -> List[Hit]:
        """``matched``: per hit, how its own caption matched the query (items only), or None."""
        out = []
        for rank, (i, s, s2) in enumerate(zip(h.ids.tolist(), h.scores.tolist(), h.secondary.tolist()), 1):
            if target != "text":
                out.append(Hit(rank, int(self.item_ids[i]), s, s2, target, path=self.items["path"][i],
                               caption=self.items["caption"][i], label=self.items["label"][i],
                               matched=None if matched is None else matched[rank - 1]))
            else:
                item = self.texts["item_id"][i]
                out.append(Hit(rank, int(self.text_ids[i]), s, s2, "text", caption=self.texts["text"][i],
                               source=self.texts["source"][i], item_id=None if item < 0 else item,
                               path=self.items["path"][self.item_row(item)] if item >= 0 else None))
        return out

    def item_path(self, item_id: int) -> str:
        """The file an item was built from (as recorded at build time)."""
        return self.items["path"][self.item_row(item_id)]

    def item_row(self, item_id: int) -> int:
        """Row of an item id (ids are kept ascending, so this is a binary search)."""
        row = int(np.searchsorted(self.item_ids, item_id))
        if row >= len(self.item_ids) or self.item_ids[row] != item_id:
            raise InputError(f"expected an item id of this collection, got {item_id} (deleted or never added)")
        return row

    # ---- classification -----------------------------------------------------------------------
    def classifier(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> ZeroShotClassifier:
        """A zero-shot classifier of this collection's modality over ``labels``, prompts averaged over
        ``templates``. Inputs are centred on the mean of the collection's items (its corpus) rather than
        the anchors' when it holds at least ``classify.MIN_CORPUS`` of them: the collection is the domain
        its inputs are classified in. An image network with its own ImageNet head adds its signals.
        The last few classifiers are kept: centring on the corpus classifies a sample of it, about a
        second that a repeated request need not pay again."""
        key = (tuple(labels), tuple(templates))
        kept = self.__dict__.setdefault("_classifiers", OrderedDict())
        clf = kept.get(key)
        if clf is None:  # requests in other threads may build the same one: the same answer, kept once
            clf = kept[key] = self._new_classifier(labels, templates)
            while len(kept) > KEPT_CLASSIFIERS:
                kept.popitem(last=False)
        return clf

    def _new_classifier(self, labels: Sequence[str], templates: Sequence[str]) -> ZeroShotClassifier:
        sides = {m: Side(spec, *stored.parts(self.manifest, spec, self.anchor_vectors[m]))
                 for m, spec in stored.specs(self.manifest).items()}
        head = ClassHead.of(self.encoder(self.modality), self.encoder("text")) if self.modality == "image" else None
        return ZeroShotClassifier(labels, templates, text_encoder=self.encoder("text"), image=sides[self.modality],
                                  text=sides["text"], style=self.style, corpus=self.corpus_sample(), head=head)

    def corpus_sample(self) -> CorpusSample:
        """Up to ``classify.CORPUS_SAMPLE`` of this collection's item vectors, evenly spaced, taken once per
        opened collection: a collection never changes in place (``add`` and ``delete`` return a new one)."""
        if getattr(self, "_corpus_sample", None) is None:
            self._corpus_sample = CorpusSample.of(self.sides[self.modality].abs)
        return self._corpus_sample

    def classify(self, inputs: Optional[Sequence[ImageLike]], labels: Sequence[str], *,
                 templates: Sequence[str] = DEFAULT_TEMPLATES, k: int = 5, batch_size: int = 32,
                 show_progress_bar: Optional[bool] = None, abstain: Optional[float] = None) -> Classification:
        """Top-k labels with probabilities for each input (images, or sounds in an audio collection);
        ``inputs=None`` classifies the collection's own items (from their stored vectors, no re-encoding:
        their stored label vectors serve the label bridge, but the WordNet tree needs the network's
        logits, which a collection does not keep). ``abstain``: a top probability below it answers
        "none of these". The result is the predictions, with the signals they used."""
        self.check_files()
        clf = self.classifier(labels, templates)
        logits = label_vecs = None
        if inputs is None:
            vecs, label_vecs = self.sides[self.modality].abs, self.item_labels
        elif clf.head is not None:
            vecs, logits = self.encoder(self.modality).encode_labelled(
                list(inputs), batch_size=batch_size, show_progress_bar=show_progress_bar)
        else:
            vecs = self.encoder(self.modality).encode(list(inputs), batch_size=batch_size,
                                                      show_progress_bar=show_progress_bar)
        preds = clf.predict(vecs, k=k, logits=logits, label_vectors=label_vecs, abstain=abstain)
        return Classification(preds, clf.signals_used(logits=logits is not None, label_vectors=label_vecs is not None),
                              clf.centred_on, [] if clf.head is None else clf.head.covered)

    def classify_vectors(self, vectors, labels: Sequence[str], *, templates: Sequence[str] = DEFAULT_TEMPLATES,
                         k: int = 5, abstain: Optional[float] = None) -> Classification:
        """:meth:`classify` for inputs already embedded by this collection's items' encoder (one a row; a
        ``vectors:NAME`` side's own space): no model is loaded for them, so the signals are those that
        need no network's logits (ASIF and the corpus's votes; ``Classification.signals`` says which)."""
        self.check_files()
        if not len(np.shape(vectors)) or not np.shape(vectors)[0]:
            raise InputError(f"expected at least one {self.modality} vector to classify, got shape {np.shape(vectors)}")
        q = self._checked_vectors(vectors, self.modality)
        clf = self.classifier(labels, templates)
        preds = clf.predict(q, k=k, abstain=abstain)
        return Classification(preds, clf.signals_used(), clf.centred_on, [] if clf.head is None else clf.head.covered)

    # ---- description --------------------------------------------------------------------------
    def info(self) -> Dict:
        m = self.manifest
        size = sum(f["bytes"] for f in m["files"].values())
        return {"path": str(self.folder), "created": m["created"], "format_version": m["format_version"],
                "modality": self.modality, "encoders": m["encoders"], "anchors": m["anchors"],
                "pivots": m.get("pivots", []), "projector": projector_summary(m),
                **({"projectors": m["projectors"]} if "projectors" in m else {}),
                "indexes": m["indexes"], "counts": m["counts"], "bytes_on_disk": size,
                "versions": m.get("versions", {}), "corpus": m.get("corpus", {}),
                "skipped": m.get("skipped", []), **({"style": m["style"]} if m.get("style") else {}),
                **({"labels": m["labels"]} if m.get("labels") else {}),
                **({"tuning": m["tuning"]} if m.get("tuning") else {}),
                **({"anchor_rarity": m["anchor_rarity"]} if m.get("anchor_rarity") else {}),
                **({"approximate": approximate} if (approximate := self.approximate_sides()) else {}),
                "columns": [{"name": n, "type": ty} for n, ty in self.filter_columns()]}

    def approximate_sides(self) -> Dict:
        """The sides set to search approximately (:meth:`search_approximately`), with their settings:
        what ``info`` and the server's collection page say, so that nobody takes such answers for exact."""
        return {m: spec for m, side in self.sides.items() if (spec := side.index.approximate_spec()) is not None}


# The shards of a sharded collection are collections: wired here rather than imported there, so that
# the two modules do not import each other.
ShardedCollection.shard_type = Collection
