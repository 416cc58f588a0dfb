"""The second half of a build: a collection folder written from embeddings already made.

Shared by :func:`retrieval.build.builder.build_collection`, ``reanchor`` / ``reencode``
(retrieval/build/reanchor.py) and the shards of a distributed build (retrieval/distributed.py): each
fills one :class:`Contents` and calls :func:`write_collection`, which relativises with the recipe's
projectors, indexes, and writes every file and the manifest into a temporary folder renamed into place.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from retrieval.build.anchors import AnchorSet
from retrieval.build.rarity import relativised_items
from retrieval.build.recipe import Recipe
from retrieval.core.projector import fit_projector
from retrieval.core.style import StyleNormaliser
from retrieval.core.translation import Translator
from retrieval.errors import InputError
from retrieval.indexes import make_index
from retrieval.store.arrow import dense_column, sparse_columns, write_parquet_atomic
from retrieval.store.bridges import save_style, save_translator
from retrieval.store.format import FORMAT, FORMAT_VERSION, labels_file, library_versions, now_iso, write_vectors
from retrieval.store.writing import write_atomically

log = logging.getLogger(__name__)

MAX_SKIPPED_LISTED = 100
HASH_COLUMN = "sha256"  # items.parquet: each item file's SHA-256, how 'add' recognises files it already has
# Dense embeddings rarely tie (unlike sparse relative vectors at 0): a small candidate margin keeps
# approximate indexes fast.
DENSE_TIE_MARGIN = 16


@dataclass
class Contents:
    """Everything a collection folder is written from."""

    rows: List[Dict]                 # the corpus rows kept: path, caption, label, metadata (and sha256)
    item_vecs: np.ndarray            # their embeddings, in row order
    captioned: List[int]             # the rows that have a caption ...
    cap_vecs: np.ndarray             # ... and those captions' embeddings
    anchor_set: AnchorSet            # the anchors, after their views were merged
    anchor_vecs: Tuple[np.ndarray, np.ndarray]  # (media, text) vectors of the anchors
    encoders: Dict                   # modality -> {"spec", "dim"}
    rec: Recipe                      # the build's settings: it makes every projector's steps
    index_spec: Dict                 # the relative vectors' index (build/options.py: parse_index_spec)
    dspec: Optional[Dict] = None     # FAISS indexes for the dense routes, or None (exact)
    pivots: Sequence = ()            # (pivot AnchorSet, (its own-modality vectors, its text vectors))
    style: Optional[StyleNormaliser] = None  # learned from anchors drawn several ways (core/style.py)
    anchor_views: Optional[int] = None       # anchor rows before their views were merged
    anchors_selected: Optional[Dict] = None  # how an anchor budget chose the pairs kept
    background: Optional[tuple] = None       # (bank AnchorSet, its media vectors, its text vectors)
    self_anchors: Optional[Dict] = None      # how captioned corpus items joined the anchors (build/self_anchors.py)
    given_text_vecs: Optional[np.ndarray] = None  # the given anchors' captions as encoded, when that moved them
    labels: Optional[Tuple[np.ndarray, Dict]] = None  # (items' label vectors, builder.label_setup's settings)
    corpus: str = ""                 # where the corpus came from
    skipped: Sequence[Dict] = ()     # corpus files that could not be decoded
    # A rewritten collection's history (add, delete, reanchor, a shard): stable ids (default 0..n-1),
    # ids never reused, skips counted beyond the list, relative vectors made elsewhere (a distributed
    # build's workers: (items', corpus captions')), and keys merged into the manifest.
    ids: Optional[np.ndarray] = None
    next_item_id: Optional[int] = None
    skipped_total: Optional[int] = None
    rel: Optional[tuple] = None
    extra: Optional[Dict] = None

    @property
    def modality(self) -> str:
        return self.anchor_set.modality


def items_table(ids, rows: List[Dict], rel, kind: str) -> pa.Table:
    """The items' rows; their embeddings go to a .npy file beside it (collection.write_vectors)."""
    cols = {"id": pa.array(np.asarray(ids, np.int64), pa.int64()),
            "path": pa.array([r["path"] for r in rows], pa.string()),
            "caption": pa.array([r["caption"] for r in rows], pa.string()),
            "label": pa.array([r["label"] for r in rows], pa.string())}
    if rows and all(r.get("sha256") for r in rows):
        cols[HASH_COLUMN] = pa.array([r["sha256"] for r in rows], pa.string())
    for name in dict.fromkeys(c for r in rows for c in r.get("meta", {})):  # metadata columns, in table order
        try:
            cols[name] = pa.array([r.get("meta", {}).get(name) for r in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(f"expected one type of value in the metadata column {name!r}, got a mix: {exc}") from exc
    if kind == "asif":
        cols["rel_indices"], cols["rel_values"] = sparse_columns(rel)
    return pa.table(cols)


def texts_table(ids, texts: List[str], sources: List[str], item_ids, rel, kind: str) -> pa.Table:
    cols = {"id": pa.array(np.asarray(ids, np.int64), pa.int64()), "text": pa.array(texts, pa.string()),
            "source": pa.array(sources, pa.string()), "item_id": pa.array(np.asarray(item_ids, np.int64), pa.int64())}
    if kind == "asif":
        cols["rel_indices"], cols["rel_values"] = sparse_columns(rel)
    return pa.table(cols)


def write_indexes(tmp: Path, index_spec: Dict, relatives: Dict) -> Dict:
    """Build and save one index per ``{stem: relative vectors}``; return their manifest specs."""
    out = {}
    for stem, rel in relatives.items():
        idx = make_index(index_spec).add(rel)
        out[stem] = dict(idx.spec(), files=idx.save(str(tmp), stem))
    return out


def write_dense_indexes(tmp: Path, spec: Optional[Dict], modality: str, item_vecs: np.ndarray,
                        translator: Translator) -> Dict:
    """FAISS indexes for the dense routes into the items' space: the items' own embeddings (absolute
    route) and the same in the text->item translator's scaled coordinates (translation route)."""
    if spec is None:
        return {}
    out = {}
    build = dict({k: v for k, v in spec.items() if k != "estimate"}, tie_margin=DENSE_TIE_MARGIN)
    for stem, vecs in ((f"{modality}_absolute", item_vecs), (f"{modality}_translated", translator.scale_target(item_vecs))):
        idx = make_index(build).add(np.ascontiguousarray(vecs, np.float32))
        out[stem] = dict(idx.spec(), files=idx.save(str(tmp), stem), **({"estimate": spec["estimate"]}
                                                                         if "estimate" in spec else {}))
    return out


def _anchor_table(anchor_set: AnchorSet, media_vecs: np.ndarray, text_vecs: np.ndarray) -> pa.Table:
    m = anchor_set.modality
    return pa.table({m: pa.array(anchor_set.paths, pa.string()), "caption": pa.array(anchor_set.captions, pa.string()),
                     f"{m}_vector": dense_column(media_vecs), "text_vector": dense_column(text_vecs)})


class Clock:
    """Wall time per build stage, recorded in the manifest: where a build's minutes go."""

    def __init__(self):
        self.last, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now


@dataclass
class _Relativised:
    """What relativising a Contents gives: the texts side, the projector specs and relative vectors,
    and the anchor rows stored (the background bank's after the anchors')."""

    texts: List[str]
    text_source: List[str]
    text_item: List[int]
    text_vecs: np.ndarray
    specs: Dict
    item_rel: object
    text_rel: object
    kind: str
    stored: Tuple[AnchorSet, np.ndarray, np.ndarray]
    rarity: Optional[Dict] = None  # what build/rarity.py did (None: not asked for)


def write_collection(out, c: Contents, *, clock: Optional[Clock] = None, overwrite: bool = False) -> Path:
    """Relativise (unless ``c.rel`` is given), index and write a collection from ``c``; return its path.
    Everything goes to a temporary folder renamed into place (retrieval/store/writing.py)."""
    clock = clock or Clock()
    r = relativise(c, out)
    clock.lap("relativise")
    return write_atomically(out, lambda tmp: _manifest(c, r, _write_files(tmp, c, r), clock), overwrite=overwrite)


def relativise(c: Contents, out="") -> _Relativised:
    """The recipe's projectors fitted on the anchors (and the bank, a block of their own), and the
    relative vectors of the items and of every text: corpus captions first, then the anchors'."""
    ids = _ids(c)
    a_med, a_txt = c.anchor_vecs
    modality = c.modality
    # the anchors' captions are texts too, but for the corpus's own pairs: their captions are already
    # (and as encoded: self-anchoring moved the given ones, but a query typed as one is not moved)
    n_anchors = len(c.anchor_set) - (c.self_anchors["count"] if (c.self_anchors or {}).get("kept") else 0)
    given_txt = a_txt[:n_anchors] if c.given_text_vecs is None else c.given_text_vecs
    texts = [c.rows[i]["caption"] for i in c.captioned] + list(c.anchor_set.captions[:n_anchors])
    text_vecs = np.vstack([c.cap_vecs, given_txt]) if len(c.captioned) else given_txt
    stored, bank = (c.anchor_set, a_med, a_txt), {}
    if c.background is not None:  # the bank's rows go after the anchors' (the projectors' "bank" block)
        b_set, b_med, b_txt = c.background
        stored = (AnchorSet(list(c.anchor_set.paths) + list(b_set.paths), list(c.anchor_set.captions) + list(b_set.captions),
                            source=c.anchor_set.source, content_hash=c.anchor_set.content_hash, modality=modality),
                  np.vstack([a_med, b_med]), np.vstack([a_txt, b_txt]))
        bank = {modality: b_med, "text": b_txt}
    specs = c.rec.specs(modality, style=c.style is not None, n_bank=len(c.background[0]) if c.background else 0)
    log.info("relativising (%s) and writing %s", specs[modality], out)

    def fit(spec, m: str = modality):
        return fit_projector(spec, a_med if m == modality else a_txt, bank=bank.get(m),
                             style=c.style if m == modality else None)

    specs, med, item_rel, rarity = relativised_items(specs, modality, fit, c.item_vecs, c.rec.rarity,
                                                     None if c.rel is None else c.rel[0])
    txt = fit(specs["text"], "text")
    if c.rel is None:
        text_rel = txt.transform(text_vecs)
    else:  # the anchor captions' are made here
        import scipy.sparse as sp

        text_rel = (sp.vstack([c.rel[1], txt.transform(given_txt)], format="csr") if med.kind == "asif"
                    else txt.transform(text_vecs))
    return _Relativised(texts, ["corpus"] * len(c.captioned) + ["anchor"] * n_anchors,
                        [int(ids[i]) for i in c.captioned] + [-1] * n_anchors, text_vecs, specs, item_rel, text_rel,
                        med.kind, stored, rarity)


def _ids(c: Contents) -> np.ndarray:
    return np.arange(len(c.rows)) if c.ids is None else np.asarray(c.ids, np.int64)


def _write_files(tmp: Path, c: Contents, r: _Relativised) -> Dict:
    """Every file but the manifest; returns the manifest's entries that describe them."""
    modality, (a_med, a_txt) = c.modality, c.anchor_vecs
    indexes = write_indexes(tmp, c.index_spec, {f"{modality}_relative": r.item_rel, "text_relative": r.text_rel})
    # Direct translators both ways, fitted on the same anchors: the planner's translation route.
    bridges = [{"kind": "anchors", "modalities": [modality, "text"], "name": c.anchor_set.source}]
    translators = {}
    for src, dst, xs, ys in (("text", modality, a_txt, a_med), (modality, "text", a_med, a_txt)):
        fname = f"translator-{src}-{dst}.parquet"
        translators[src, dst] = Translator("orthogonal").fit(xs, ys)
        save_translator(translators[src, dst], str(tmp / fname))
        bridges.append({"kind": "translator", "modalities": [src, dst], "name": "orthogonal", "file": fname})
    dense = write_dense_indexes(tmp, c.dspec, modality, c.item_vecs, translators["text", modality])
    pivots = []
    for pv, (pm, pt) in c.pivots:
        fname = f"anchors-{pv.modality}.parquet"
        write_parquet_atomic(_anchor_table(pv, pm, pt), str(tmp / fname))
        pivots.append({"modalities": [pv.modality, "text"], "source": pv.source, "content_hash": pv.content_hash,
                       "count": len(pv), "file": fname, "projector": c.rec.pivot_spec(len(pv))})
    write_parquet_atomic(items_table(_ids(c), c.rows, r.item_rel, r.kind), str(tmp / "items.parquet"))
    write_parquet_atomic(texts_table(np.arange(len(r.texts)), r.texts, r.text_source, r.text_item, r.text_rel, r.kind),
                         str(tmp / "texts.parquet"))
    write_vectors(tmp, modality, c.item_vecs)
    write_vectors(tmp, "text", r.text_vecs)
    write_parquet_atomic(_anchor_table(*r.stored), str(tmp / "anchors.parquet"))
    out = {"indexes": indexes, "bridges": bridges, "pivots": pivots, **({"dense_indexes": dense} if dense else {})}
    if c.style is not None:
        out["style"] = save_style(c.style, tmp, modality)
    if c.labels is not None:
        item_labels, cfg = c.labels
        out["labels"] = {"file": write_vectors(tmp, modality, item_labels, name=labels_file(modality)),
                         "names": cfg["names"], "count": cfg["count"], "temperature": cfg["temperature"],
                         "weight": cfg["weight"], "dim": int(item_labels.shape[1])}
        bridges.append({"kind": "labels", "modalities": ["text", modality], "name": cfg["names"]})
    return out


def _anchors_entry(c: Contents) -> Dict:
    a, views = c.anchor_set, c.anchor_views
    bank = c.background[0] if c.background is not None else None
    return {"source": a.source, "content_hash": a.content_hash, "count": len(a), "modalities": [c.modality, "text"],
            **({"views": int(views)} if views and views != len(a) else {}),
            **({"selected": c.anchors_selected} if c.anchors_selected else {}),
            **({"self": c.self_anchors} if c.self_anchors else {}),
            **({"background": {"source": bank.source, "count": len(bank), "content_hash": bank.content_hash,
                               "weight": c.rec.background_weight}} if bank is not None else {})}


def _manifest(c: Contents, r: _Relativised, files: Dict, clock: Clock) -> Dict:
    """The manifest (retrieval/store/format.py adds the file checksums and its own)."""
    ids, skipped = _ids(c), list(c.skipped)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created": now_iso(), "versions": library_versions(),
        "items": {"modality": c.modality},
        "encoders": c.encoders,
        "anchors": _anchors_entry(c),
        **({"style": files["style"]} if "style" in files else {}),
        **({"labels": files["labels"]} if "labels" in files else {}),
        "pivots": files["pivots"],
        "projectors": r.specs,
        **({"anchor_rarity": r.rarity} if r.rarity else {}),
        "corpus": {"source": c.corpus},
        "indexes": files["indexes"],
        **({"dense_indexes": files["dense_indexes"]} if "dense_indexes" in files else {}),
        "bridges": files["bridges"],
        "counts": {"items": len(c.rows), "texts": len(r.texts), "corpus_captions": len(c.captioned),
                   "anchors": len(c.anchor_set), "skipped": len(skipped) if c.skipped_total is None else c.skipped_total},
        "next_ids": {"items": int(ids.max(initial=-1)) + 1 if c.next_item_id is None else int(c.next_item_id),
                     "texts": len(r.texts)},
        "skipped": skipped[:MAX_SKIPPED_LISTED],
        # seconds per stage (write = indexes, tables and translators; checksums come after)
        "timings": dict(clock.laps, write=round(time.perf_counter() - clock.last, 3)),
        **(c.extra or {}),
    }
