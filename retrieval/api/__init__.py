"""The facade: everything the CLI, the HTTP server and users' code call, in one place.

>>> from retrieval.api import open_collection
>>> col = open_collection("indexes/demo")                    # doctest: +SKIP
>>> col.search("an emoji of a red apple", k=5)[0].path        # doctest: +SKIP

:class:`Collection` (one folder) and :class:`ShardedCollection` (a distributed build's shards) both
keep the :class:`Searchable` protocol; :func:`open_collection` opens either. The names re-exported
below (build options and defaults, classification helpers, the planner's routes, media helpers) are
what the thin layers above need, so that they import the facade and the store, nothing deeper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, runtime_checkable

from retrieval.api.classify import (
    DEFAULT_TEMPLATES,
    Prediction,
    ZeroShotClassifier,
    accuracy,
    check_template,
    labels_given,
    read_labels,
)
from retrieval.api.collection import Collection, Hit
from retrieval.api.sharded import ShardedCollection
from retrieval.build.background import DEFAULT_WEIGHT as DEFAULT_BACKGROUND_WEIGHT
from retrieval.build.builder import build_collection
from retrieval.build.captioning import apply_captions, suggest, write_todo
from retrieval.build.options import (
    DEFAULT_CENTER,
    DEFAULT_IMAGE_P,
    DEFAULT_K,
    DEFAULT_P,
    DEFAULT_VIEWS_K,
    DEFAULT_VIEWS_P,
    DEFAULT_WHITEN,
    BuildOptions,
)
from retrieval.build.reanchor import reanchor
from retrieval.build.reencode import reencode
from retrieval.build.self_anchors import given_count
from retrieval.build.update import add_items, delete_items
from retrieval.core.selection import SELECTORS
from retrieval.encoders import DEFAULT_ENCODERS
from retrieval.encoders.labels import DEFAULT_VIEWS_WEIGHT as DEFAULT_VIEWS_LABEL_WEIGHT
from retrieval.encoders.labels import DEFAULT_WEIGHT as DEFAULT_LABEL_WEIGHT
from retrieval.encoders.registry import describe as describe_encoders
from retrieval.errors import InputError
from retrieval.indexes.heads import Approximate
from retrieval.media.images import open_image
from retrieval.media.tables import guess_modality, media_modality
from retrieval.planning.planner import ROUTES, Plan
from retrieval.store.filters import FilterError
from retrieval.store.sharded import is_sharded, read_sharded_manifest


@runtime_checkable
class Searchable(Protocol):
    """What a collection answers, whether one folder or many shards."""

    modality: str
    manifest: Dict

    def plan(self, modality: str, target: Optional[str] = None, route: Optional[str] = None) -> Plan: ...

    def encoder(self, modality: str) -> Any: ...

    def search(self, query, *, k: int = 10, modality: Optional[str] = None, target: Optional[str] = None,
               route: Optional[str] = None, where: Optional[str] = None) -> List[Hit]: ...

    def search_many(self, queries: Sequence, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                    route: Optional[str] = None, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
                    where: Optional[str] = None) -> List[List[Hit]]: ...

    def search_vectors(self, vectors, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                       route: Optional[str] = None, where: Optional[str] = None) -> List[List[Hit]]: ...

    def classify(self, inputs, labels, **kwargs) -> List[Prediction]: ...

    def classify_vectors(self, vectors, labels, **kwargs) -> List[Prediction]: ...

    def item_path(self, item_id: int) -> str: ...

    def info(self) -> Dict: ...

    def search_approximately(self, setting=True) -> List[str]: ...


def anchor_packs() -> List[Dict]:
    """The anchor packs (``--anchors pack:NAME``): name, modality, description, pairs when already
    made, and what is missing here to make them."""
    from retrieval.datasets.packs import list_packs
    from retrieval.store.cache import default_cache_dir

    return list_packs(Path(default_cache_dir()))


def prepare_anchors(sources, show_progress_bar: Optional[bool] = None) -> Dict:
    """Make (once) and check the anchor set ``sources`` names: its source, modality and pairs."""
    from retrieval.build.anchors import load_anchor_set

    anchors = load_anchor_set(sources, show_progress_bar=show_progress_bar)
    return {"source": anchors.source, "modality": anchors.modality, "pairs": len(anchors),
            "anchors": anchors.n_anchors, "content_hash": anchors.content_hash}


def open_collection(folder, *, device: str = "cpu", verify: bool = True, shard_actors: Optional[str] = None,
                    **encoders) -> Searchable:
    """Open a collection folder or a sharded one (after checking its manifest and checksums).

    ``shard_actors``: for a sharded folder, hold its shards in Ray actors (one per shard) at this
    address (``""``: a local cluster) instead of in this process. ``encoders``: ``image_encoder=``,
    ``text_encoder=``, ``audio_encoder=`` as for :meth:`Collection.open`.
    """
    if is_sharded(folder):
        if encoders:
            raise InputError(f"expected no query encoders for the sharded collection {str(folder)!r}, got "
                             f"{sorted(encoders)}: stitching is per collection folder; search a shard folder")
        if shard_actors is None:
            return ShardedCollection.open(folder, device=device, verify=verify)
        shards = len(read_sharded_manifest(Path(folder))["shards"])
        return ShardedCollection.open(folder, device=device, verify=verify, actors=shards, address=shard_actors or None)
    return Collection.open(folder, device=device, verify=verify, **encoders)


__all__ = ["anchor_packs", "prepare_anchors", "given_count", "Collection", "Hit", "Searchable", "ShardedCollection", "open_collection", "build_collection",
           "BuildOptions", "apply_captions", "suggest", "write_todo", "add_items", "delete_items", "reanchor", "reencode", "ZeroShotClassifier", "Prediction", "DEFAULT_TEMPLATES",
           "accuracy", "check_template", "labels_given", "read_labels", "ROUTES", "Plan", "DEFAULT_ENCODERS", "describe_encoders",
           "open_image", "guess_modality", "media_modality", "DEFAULT_K", "DEFAULT_P", "DEFAULT_IMAGE_P", "DEFAULT_WHITEN",
           "DEFAULT_BACKGROUND_WEIGHT", "DEFAULT_CENTER", "DEFAULT_VIEWS_K", "DEFAULT_VIEWS_P", "DEFAULT_LABEL_WEIGHT",
           "DEFAULT_VIEWS_LABEL_WEIGHT", "is_sharded", "FilterError", "SELECTORS",
           "Approximate"]
