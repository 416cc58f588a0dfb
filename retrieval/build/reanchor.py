"""Swap a collection's anchors without re-encoding its corpus.

Relative vectors are similarities to anchors, so the stored embeddings of the items and of their
captions are all a new anchor set needs: only the new anchors are encoded (with the collection's own
encoders, cached by content hash like every anchor set), then the relative vectors, the translators,
the style normaliser and the indexes are made again from what the folder holds. The result is the
collection a fresh build with the new anchors would give (tests/test_reanchor.py checks it for every
index backend), written like every build: to a scratch folder, renamed into place.

What a new anchor set decides (k and p when not given, the label weight) follows the rules of a
fresh build with these options; what the old collection decided for its corpus (its encoders, its
index backends, its dense indexes, whether it has label vectors, its pivot sets, its item ids) is
kept unless the options say otherwise. Label vectors and pivot sets do not depend on the main
anchors and are carried over as they are.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from retrieval.build.anchors import AnchorSet, encode_anchors, load_anchor_set, prepare_views
from retrieval.build.builder import anchor_labels, apply_budget, background_bank, dense_spec, encode_bank, label_setup
from retrieval.build.options import BuildOptions, parse_index_spec
from retrieval.build.recipe import recipe
from retrieval.build.self_anchors import Corpus, self_anchored
from retrieval.build.tuning import check_tune, tuned
from retrieval.build.writer import HASH_COLUMN, Clock, Contents, write_collection
from retrieval.encoders import DEFAULT_ENCODERS, encoder_meta, load_encoder_as_built
from retrieval.errors import InputError
from retrieval.media.tables import RESERVED_COLUMNS
from retrieval.store.arrow import dense_from_column
from retrieval.store.format import now_iso, read_parquet
from retrieval.store.projectors import summary as projector_summary
from retrieval.store.reader import StoredCollection
from retrieval.store.sharded import is_sharded
from retrieval.store.writing import check_output

log = logging.getLogger(__name__)
KEPT_UNLESS_GIVEN = ("index", "dense_index", "labels")  # decided for the corpus, not for the anchors


class _StoredPivot:
    """A pivot anchor set as the collection stores it (its files may be gone: only the stored rows
    and vectors are needed to carry it over)."""

    def __init__(self, entry: Dict, table, modality: str):
        self.modality, self.source, self.content_hash = modality, entry.get("source", ""), entry["content_hash"]
        self.paths = table.column(modality).to_pylist()
        self.captions = table.column("caption").to_pylist()

    def __len__(self) -> int:
        return len(self.paths)


class _AsBuilt:
    """The encoder a collection was built with, loaded only when something must be encoded: anchors
    already in the cache need no model, so such a reanchor loads none."""

    def __init__(self, manifest: Dict, modality: str, device: str):
        self.manifest, self.modality, self.device = manifest, modality, device
        self.name, self.dim = manifest["encoders"][modality]["spec"], int(manifest["encoders"][modality]["dim"])
        self._encoder = None

    @property
    def model(self):
        if self._encoder is None:
            self._encoder = load_encoder_as_built(self.manifest, self.modality, device=self.device)
        return self._encoder

    def encode(self, *args, **kwargs):
        return self.model.encode(*args, **kwargs)

    def encode_labelled(self, *args, **kwargs):
        return self.model.encode_labelled(*args, **kwargs)

    @property
    def label_names(self):
        return self.model.label_names


def _pivots(col: StoredCollection, text_encoder=None) -> List:
    """The stored pivot sets with their vectors; their captions encoded again when ``text_encoder``
    is not the one they were encoded with."""
    dims = {m: e["dim"] for m, e in col.manifest["encoders"].items()}
    out = []
    for entry in col.manifest.get("pivots", []):
        m = entry["modalities"][0]
        table = read_parquet(col.folder, entry["file"])
        own, text = (dense_from_column(table.column(f"{x}_vector"), dims[x]) for x in (m, "text"))
        pv = _StoredPivot(entry, table, m)
        if text_encoder is not None and text_encoder.name != col.manifest["encoders"]["text"]["spec"]:
            text = text_encoder.encode(pv.captions, batch_size=64, show_progress_bar=False)
        out.append((pv, (own, text)))
    return out


def _check_encoders(o: BuildOptions, manifest: Dict) -> None:
    """Encoder options other than the defaults must name the collection's own encoders: the stored
    embeddings were made by those, and the new anchors must be encoded by the same ones."""
    for m, built in manifest["encoders"].items():
        given = getattr(o, f"{m}_encoder", None)
        if given not in (None, DEFAULT_ENCODERS.get(m), built["spec"]):
            raise InputError(f"expected the {m} encoder this collection was built with ({built['spec']!r}) or none, "
                             f"got {given!r}: reanchoring keeps the stored embeddings, so it keeps their encoders; "
                             f"build the collection again to change encoders")


def _given(options: Optional[BuildOptions], changes: Dict) -> set:
    """Option names the caller set (keywords, or fields of ``options`` that differ from the defaults)."""
    if options is None:
        return set(changes)
    defaults = BuildOptions()
    return set(changes) | {f.name for f in dataclasses.fields(options) if getattr(options, f.name) != getattr(defaults, f.name)}


def reanchor(folder, anchors, out=None, options: Optional[BuildOptions] = None, **changes) -> Path:
    """Recompute the collection at ``folder`` against new ``anchors`` (a table, a folder, or an
    :class:`AnchorSet`) and write it to ``out`` (default: in place, atomically); returns its path.
    Only the new anchors are encoded. Options as for :func:`build_collection`; see the module
    docstring for which of the old collection's settings are kept.

    >>> reanchor("indexes/photos", "better-anchors.csv")                      # doctest: +SKIP
    >>> reanchor("indexes/photos", "better-anchors.csv", "indexes/photos-b", k=64)  # doctest: +SKIP
    """
    src = Path(folder)
    if is_sharded(src):
        raise InputError(f"expected a collection folder to reanchor, got the sharded collection {str(src)!r}; "
                         f"reanchor each shard, or build it again with --ray")
    given = _given(options, changes)
    o = BuildOptions.of(options, **changes)
    col = StoredCollection.read(src)
    _check_encoders(o, col.manifest)
    anchor_set = anchors if isinstance(anchors, AnchorSet) else load_anchor_set(anchors)
    return remake(col, anchor_set, out, o, given, record={"reanchored": {
        "at": now_iso(), "from": str(src), "previous_anchors": col.manifest["anchors"].get("content_hash", "")}})


def remake(col: StoredCollection, anchor_set: AnchorSet, out, o: BuildOptions, given: set, *, record: Dict,
           encoders: Optional[Dict] = None, corpus: Optional[Dict] = None) -> Path:
    """Write ``col`` again against ``anchor_set``: what reanchor and reencode share. ``encoders``
    (modality -> Encoder) replace the build's; ``corpus`` (``item_vecs``, ``cap_vecs``, and with label
    vectors ``labels`` and ``label_cfg``) replaces the stored embeddings, in stored row order; with
    ``rows`` and ``captioned`` (as :func:`stored_corpus` gives them) the corpus's captions too."""
    clock = Clock()
    src, m, modality = col.folder, col.manifest, col.modality
    if anchor_set.modality != modality:
        raise InputError(f"expected anchors pairing {modality} with text for this {modality} collection, got "
                         f"{anchor_set.modality} anchors from {anchor_set.source or 'the anchor set'}; nothing was written")
    specs = {x: (encoders[x].name if encoders and x in encoders else m["encoders"][x]["spec"]) for x in m["encoders"]}
    rec = recipe(anchor_set, specs[modality], o)  # as a fresh build with these anchors and options
    built_bank_k = projector_summary(m).get("background_k")
    if "reencoded" in record and "k" not in given and built_bank_k is not None:
        rec = dataclasses.replace(rec, bank_k=built_bank_k)  # a reencode keeps the bank block's k as built
    check_tune(anchor_set, o)  # --tune's refusals, before the anchors' encoding
    bank = background_bank(anchor_set, o)
    item_vecs = corpus["item_vecs"] if corpus else col.sides[modality].abs
    index_spec, dspec = _index_specs(col, o, given, item_vecs.shape[1])
    keep_labels = _keep_labels(col, o, given, corpus)
    out = check_output(src if out is None else out, overwrite=o.overwrite or out is None
                       or Path(out).resolve() == src.resolve())
    clock.lap("check_files")

    encoders = {x: (encoders or {}).get(x) or _AsBuilt(m, x, o.device) for x in (modality, "text")}
    clock.lap("load_models")
    anchors = _encoded_anchors(anchor_set, bank, encoders, o, item_vecs)
    clock.lap("encode_anchors")
    rows, captioned, cap_vecs = stored_corpus(col)
    if corpus is not None and corpus.get("cap_vecs") is not None:  # re-encoded, in item order like the build's
        cap_vecs = corpus["cap_vecs"]
    if corpus is not None and corpus.get("rows") is not None:  # captions given to the collection
        rows, captioned = corpus["rows"], corpus["captioned"]
    o = o if "self_anchors" in given else o.replace(self_anchors=bool(m["anchors"].get("self")))  # as built
    if "anchor_rarity" not in given:  # as built: the weights are learnt again from the items, the power kept
        o = o.replace(anchor_rarity=float((m.get("anchor_rarity") or {}).get("power", 0.0)))
        rec = dataclasses.replace(rec, rarity=o.anchor_rarity)
    rec, anchors["self_anchors"] = _self_anchored(anchors, Corpus(rows, item_vecs, captioned, cap_vecs), rec, o,
                                                  specs[modality])
    a_lab = anchor_labels(anchors["anchor_set"], encoders[modality], _label_cfg(encoders, modality, corpus, o, rec)
                          if keep_labels else None, o)
    rec, tuning = tuned(rec, anchors["anchor_set"], *anchors["anchor_vecs"], o, bank=anchors["background"],
                        labels=a_lab)
    record = dict(record, **({"tuning": tuning} if tuning else {}))
    labels = _labels(col, corpus, rec) if keep_labels else None
    enc_meta = {x: dict(e) for x, e in m["encoders"].items()}
    enc_meta.update({x: encoder_meta(e) for x, e in encoders.items() if not isinstance(e, _AsBuilt)})
    next_items = max(int(m.get("next_ids", {}).get("items", 0)), int(col.item_ids.max(initial=-1)) + 1)
    contents = Contents(rows=rows, item_vecs=item_vecs, captioned=captioned, cap_vecs=cap_vecs, encoders=enc_meta,
                        rec=rec, index_spec=index_spec, dspec=dspec, pivots=_pivots(col, encoders["text"]),
                        labels=labels, corpus=m.get("corpus", {}).get("source", ""), skipped=m.get("skipped", []),
                        ids=col.item_ids, next_item_id=next_items, skipped_total=m["counts"].get("skipped"),
                        extra=record, **anchors)
    path = write_collection(out, contents, clock=clock, overwrite=True)
    log.info("rewrote %s against %d anchors -> %s", src, len(contents.anchor_set), path)
    return path


def _self_anchored(anchors: Dict, corpus: Corpus, rec, o: BuildOptions, media_encoder: str):
    """(the recipe, the self-anchoring record): ``anchors`` (the anchor fields of :class:`Contents`)
    updated as a fresh build would with this corpus (retrieval/build/self_anchors.py)."""
    sa = self_anchored(anchors["anchor_set"], *anchors["anchor_vecs"], corpus, rec, o, media_encoder,
                       anchors["background"], anchors["style"])
    if sa.record and sa.record["kept"]:
        anchors.update(anchor_set=sa.anchor_set, anchor_vecs=(sa.a_med, sa.a_txt), anchor_views=len(sa.anchor_set),
                       given_text_vecs=sa.given_txt)
    return sa.rec, sa.record


def _index_specs(col: StoredCollection, o: BuildOptions, given: set, dim: int) -> Tuple[Dict, Optional[Dict]]:
    """(the relative index's spec, the dense index's or None): as built unless given."""
    m, modality = col.manifest, col.modality
    index_spec = parse_index_spec(o.index) if "index" in given else {
        key: v for key, v in m["indexes"][f"{modality}_relative"].items() if key in ("backend", "dtype", "factory")}
    if "dense_index" in given:
        return index_spec, dense_spec(o.dense_index, len(col.item_ids), dim, o.max_memory, o.max_query_ms,
                                      o.dense_rerank)
    stored = m.get("dense_indexes", {}).get(f"{modality}_absolute")
    return index_spec, None if stored is None else {key: v for key, v in stored.items()
                                                    if key not in ("files", "tie_margin")}


def _keep_labels(col: StoredCollection, o: BuildOptions, given: set, corpus: Optional[Dict]) -> bool:
    """Whether the rewrite has label vectors: a reencode's when it made them, else the stored ones
    unless ``labels`` was turned off; asking for them where none are stored is refused."""
    if corpus is not None:
        return corpus.get("labels") is not None
    if "labels" in given and o.labels and col.item_labels is None:
        raise InputError("expected a collection with label vectors for --labels, got one built without them: label "
                         "vectors come from encoding the items, which reanchoring does not do; build it again")
    return col.item_labels is not None and ("labels" not in given or o.labels is not False)


def _encoded_anchors(anchor_set: AnchorSet, bank: Optional[AnchorSet], encoders: Dict, o: BuildOptions,
                     item_vecs) -> Dict:
    """The new anchors encoded (cached by content hash), their views merged and the budget applied as
    a build applies them, and the background bank: the anchor fields of :class:`Contents`."""
    modality = anchor_set.modality
    enc_kw = dict(cache_dir=o.cache_dir, batch_size=o.batch_size, show_progress_bar=o.show_progress_bar)
    log.info("encoding %d new anchor pairs (cached by content hash); the corpus is not encoded", len(anchor_set))
    a_med = encode_anchors(anchor_set, encoders[modality], modality, **enc_kw)
    a_txt = encode_anchors(anchor_set, encoders["text"], "text", **enc_kw)
    views = len(anchor_set)
    anchor_set, a_med, a_txt, style = prepare_views(anchor_set, a_med, a_txt)
    # the budget, as a build applies it (the pool's hash: the set after its views are merged)
    anchor_set, a_med, a_txt, selected = apply_budget(anchor_set, a_med, a_txt, o, np.asarray(item_vecs),
                                                      anchor_set.content_hash)
    views = len(anchor_set) if selected else views
    background = encode_bank(bank, encoders, modality, enc_kw)
    return dict(anchor_set=anchor_set, anchor_vecs=(a_med, a_txt), style=style, anchor_views=views,
                anchors_selected=selected, background=background)


def stored_corpus(col: StoredCollection) -> Tuple[List[Dict], List[int], np.ndarray]:
    """The corpus as the build read it: (rows in stored order with their hashes and metadata, the rows
    with a caption, in item order as a fresh build lists them, those captions' stored embeddings)."""
    rows = [{"path": pth, "caption": cap, "label": lab}
            for pth, cap, lab in zip(col.items["path"], col.items["caption"], col.items["label"])]
    table = col.sides[col.modality].meta
    if HASH_COLUMN in table.column_names:  # how 'add' recognises files the collection already has
        for r, h in zip(rows, table.column(HASH_COLUMN).to_pylist()):
            r["sha256"] = h
    extra = [c for c in table.column_names if c not in RESERVED_COLUMNS and c != HASH_COLUMN]
    for c in extra:  # metadata columns, for filters
        for r, v in zip(rows, table.column(c).to_pylist()):
            r.setdefault("meta", {})[c] = v
    row_of = {int(i): r for r, i in enumerate(col.item_ids.tolist())}
    corpus_texts = [t for t, s in enumerate(col.texts["source"]) if s == "corpus"]
    captioned = [row_of[int(col.texts["item_id"][t])] for t in corpus_texts]
    order = np.argsort(captioned, kind="stable")
    text_abs = col.sides["text"].abs
    cap_vecs = (np.asarray(text_abs[np.asarray(corpus_texts)[order]], np.float32) if corpus_texts
                else np.zeros((0, text_abs.shape[1]), np.float32))
    return rows, [captioned[i] for i in order], cap_vecs


def _label_cfg(encoders: Dict, modality: str, corpus: Optional[Dict], o: BuildOptions, rec) -> Optional[Dict]:
    """The label bridge's settings with its class vectors, for --tune (a reencode's, else made again as a build makes them)."""
    if not o.tune:
        return None
    if corpus is not None and corpus.get("label_cfg") is not None:
        return corpus["label_cfg"]
    return label_setup(encoders, modality, True, rec.label_weight, o.cache_dir)


def _labels(col: StoredCollection, corpus: Optional[Dict], rec) -> Tuple[np.ndarray, Dict]:
    """The label vectors and their settings: a reencode's are the new network's (the old collection
    may have had none), with the recipe's weight."""
    lm = corpus["label_cfg"] if corpus is not None else col.manifest["labels"]
    vecs = corpus["labels"] if corpus is not None else col.item_labels
    return np.asarray(vecs, np.float32), {"names": lm["names"], "count": lm["count"],
                                          "temperature": lm["temperature"], "weight": rec.label_weight}
