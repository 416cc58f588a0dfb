"""Shards searched as one collection (the folders :func:`retrieval.distributed.build_sharded`
writes): a query is encoded once, searched in every shard (in this process, or in Ray actors that
each hold shards in memory) and the shards' top lists are merged by the same ranking rule a single
collection uses (score within TIE_EPS, then the dense relative cosine, then the id), so the answer
equals that of one collection of the same items."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow.parquet as pq

from retrieval.api.cluster import connect
from retrieval.core.ranking import rank_candidates
from retrieval.errors import InputError, UnsupportedQueryError
from retrieval.media.tables import check_texts, guess_modality
from retrieval.store.format import read_manifest
from retrieval.store.sharded import read_sharded_manifest


class _ShardHolder:
    """Ray actor body: one or more shards opened once and kept in memory."""

    def __init__(self, shard_type, folders: Sequence[str], verify: bool = True):
        self.cols = [shard_type.open(f, verify=verify) for f in folders]

    def search_vectors(self, q, k, modality, target, route, where=None):
        return [c.search_vectors(q, k=k, modality=modality, target=target, route=route, where=where, captions=False)
                for c in self.cols]


class ShardedCollection:
    """Shards searched as one collection: the same search API as :class:`retrieval.Collection`
    (items as the target; texts live in every shard with the anchors', so text targets are refused).

    ``actors``: hold the shards in Ray actors (``address`` as for :func:`connect`), ``actors`` of
    them, instead of in this process.
    """

    shard_type = None  # the class a shard opens as: retrieval.api.collection.Collection (set there)

    def __init__(self, folder, manifest: Dict, *, device: str = "cpu", verify: bool = True,
                 actors: Optional[int] = None, address: Optional[str] = None):
        self.folder, self.sharded_manifest = Path(folder), manifest
        folders = [str(self.folder / s["name"]) for s in manifest["shards"]]
        # The first shard answers everything that is the same in every shard: plans, encoders,
        # classification (anchors only), explain.
        self.first = self.shard_type.open(folders[0], device=device, verify=verify)
        self.modality = self.first.modality
        self.first_ids = np.array([s["first_id"] for s in manifest["shards"]], np.int64)
        self._holders, self._local, self._paths = None, None, {}
        if actors:
            ray = connect(address)
            groups = [folders[i::actors] for i in range(min(actors, len(folders)))]
            Holder = ray.remote(_ShardHolder)
            self._holders = [Holder.remote(self.shard_type, g, verify) for g in groups]
            self._order = [i for g in range(len(groups)) for i in range(g, len(folders), actors)]
        else:
            self._local = [self.first] + [self.shard_type.open(f, device=device, verify=verify) for f in folders[1:]]
        self.manifest = dict(self.first.manifest, counts=dict(self.first.manifest["counts"], **manifest["counts"]),
                             sharded={"shards": len(folders), "shard_size": manifest["shard_size"]})

    @classmethod
    def open(cls, folder, **kwargs) -> "ShardedCollection":
        return cls(folder, read_sharded_manifest(Path(folder)), **kwargs)

    @property
    def timer(self):
        return self.first.timer

    @timer.setter
    def timer(self, fn):
        for c in self._local or [self.first]:
            c.timer = fn

    @property
    def dense_cache_bytes(self) -> int:
        return self.first.dense_cache_bytes

    @dense_cache_bytes.setter
    def dense_cache_bytes(self, n: int):  # each shard in this process keeps its own rows (core/rowcache.py)
        for c in self._local or [self.first]:
            c.dense_cache_bytes = n

    def search_approximately(self, setting=True) -> List[str]:
        """As :meth:`retrieval.Collection.search_approximately`, on every shard held in this process."""
        if self._local is None:
            raise InputError("expected shards held in this process to search approximately, got shards in Ray "
                             "actors; open the collection without actors")
        return sorted({m for c in self._local for m in c.search_approximately(setting)})

    def encoder(self, modality: str):
        return self.first.encoder(modality)

    def plan(self, modality: str, target: Optional[str] = None, route: Optional[str] = None):
        # no caption match: its scores are caption cosines, which do not merge with the route's across shards
        return self.first.plan(modality, self._target(target), route, captions=False)

    def classify(self, inputs, labels, **kwargs):
        """Classify files (the anchors are the same in every shard, so the first shard answers; its
        items stand for the corpus whose mean the inputs are centred on)."""
        if inputs is None:
            raise InputError("expected files to classify: a sharded collection's own items live in its shards; "
                             "classify a shard folder (NAME/shard-00000, ...) to label its items")
        return self.first.classify(inputs, labels, **kwargs)

    def classify_vectors(self, vectors, labels, **kwargs):
        """Classify embedded inputs (the first shard answers, as for files)."""
        return self.first.classify_vectors(vectors, labels, **kwargs)

    def _target(self, target: Optional[str]) -> str:
        target = target or "items"
        if target not in ("items", self.modality):
            raise UnsupportedQueryError(f"expected target 'items' ({self.modality}) for a sharded collection, got {target!r}: "
                             f"each shard holds the anchor captions too, so text results are searched per shard")
        return self.modality

    def search(self, query, *, k: int = 10, modality: Optional[str] = None, target: Optional[str] = None,
               route: Optional[str] = None, where: Optional[str] = None, captions: bool = True):
        return self.search_many([query], k=k, modality=modality or guess_modality(query), target=target,
                                route=route, where=where)[0]

    def search_many(self, queries: Sequence, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                    route: Optional[str] = None, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                    where: Optional[str] = None, captions: bool = True):
        """As :meth:`Collection.search_many`, without the caption match (``captions`` is accepted and
        ignored: a shard's caption cosines would not merge with the other shards' route scores)."""
        self.plan(modality, target, route)  # an impossible route fails before encoding
        if where is not None:  # and a filter that does not hold together (every shard has the same columns)
            self.first._allowed(where, self.first.modality)
        if modality == "text":  # and blank text
            check_texts(queries)
        q = self.encoder(modality).encode(list(queries), batch_size=batch_size, show_progress_bar=show_progress_bar)
        return self.search_vectors(q, k=k, modality=modality, target=target, route=route, where=where)

    def search_vectors(self, vectors, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                       route: Optional[str] = None, where: Optional[str] = None, captions: bool = True,
                       texts=None):
        """As :meth:`Collection.search_vectors`; ``where`` is applied in every shard before its top k;
        no caption match (see :meth:`search_many`)."""
        target = self._target(target)
        chosen = self.plan(modality, target, route)
        if chosen.route == "fusion" or chosen.then == "fusion":
            raise UnsupportedQueryError("expected a route whose scores compare across shards (relative, translation, absolute, "
                             "pivot); fusion ranks by position in each list, which does not merge exactly")
        q = np.asarray(vectors, np.float32)
        if self._holders is not None:
            ray = connect()
            parts = [r for h in ray.get([h.search_vectors.remote(q, k, modality, target, route, where)
                                         for h in self._holders])
                     for r in h]
            parts = [parts[self._order.index(i)] for i in range(len(parts))]
        else:
            parts = [c.search_vectors(q, k=k, modality=modality, target=target, route=route, where=where,
                                      captions=False) for c in self._local]
        out = []
        for r in range(len(q)):
            hits = [h for part in parts for h in part[r]]
            # The same ordering rule a single collection applies (score bucket, dense relative
            # cosine, then id), over the union of every shard's top k: the global top k is in it.
            ids = np.array([h.id for h in hits], np.int64)
            pos = {int(i): j for j, i in enumerate(ids.tolist())}
            sec = np.array([h.secondary for h in hits], np.float64)
            top, _, _ = rank_candidates(ids, np.array([h.score for h in hits], np.float64), k,
                                        lambda c: sec[[pos[int(i)] for i in c]])
            out.append([replace(hits[pos[int(i)]], rank=rank) for rank, i in enumerate(top.tolist(), 1)])
        return out

    def item_path(self, item_id: int) -> str:
        """The file an item was built from: looked up in its shard's id range (only that shard's
        ids and paths are read, once, when the shards live in Ray actors)."""
        s = int(np.searchsorted(self.first_ids, item_id, side="right")) - 1
        if s < 0:
            raise InputError(f"expected an item id of this collection, got {item_id}")
        if self._local is not None:
            return self._local[s].item_path(item_id)
        if s not in self._paths:
            t = pq.read_table(self.folder / self.sharded_manifest["shards"][s]["name"] / "items.parquet",
                              columns=["id", "path"])
            self._paths[s] = dict(zip(t.column("id").to_pylist(), t.column("path").to_pylist()))
        if item_id not in self._paths[s]:
            raise InputError(f"expected an item id of this collection, got {item_id}")
        return self._paths[s][item_id]

    def info(self) -> Dict:
        """The first shard's description with the whole collection's counts and size."""
        info = self.first.info()
        caps = size = 0
        for sh in self.sharded_manifest["shards"]:
            m = read_manifest(self.folder / sh["name"], verify=False)  # verified when the shards were opened
            caps += m["counts"]["corpus_captions"]
            size += sum(f["bytes"] for f in m["files"].values())
        c = self.sharded_manifest["counts"]
        info.update(path=str(self.folder), bytes_on_disk=size, skipped=self.sharded_manifest.get("skipped", []),
                    counts={"items": c["items"], "texts": caps + self.first.manifest["counts"]["anchors"],
                            "corpus_captions": caps, "skipped": c["skipped"], "shards": c["shards"]},
                    shards={"count": c["shards"], "shard_size": self.sharded_manifest["shard_size"]})
        return info
