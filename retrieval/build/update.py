"""Adding items to a collection and deleting them, without re-encoding what is already there.

Only the new files are encoded and relativised (against the collection's stored anchor vectors,
with its stored projector settings); existing rows keep their vectors. The tables are rewritten
with the new rows appended (or the deleted ones dropped) and the indexes rebuilt from the stored
relative vectors, which costs seconds where encoding costs minutes. Files that do not change
(anchors, translators, pivot sets) are hard-linked into the new version. Everything goes through
the same temporary folder and rename as a build: a failed update leaves the collection as it was.

Item and text ids are stable: new items get ids after the largest ever given (``next_ids`` in the
manifest), so a deleted id is never reused and never comes back.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np
import pyarrow as pa

from retrieval.build.builder import encode_corpus, load_corpus
from retrieval.build.writer import (
    HASH_COLUMN,
    MAX_SKIPPED_LISTED,
    items_table,
    texts_table,
    write_dense_indexes,
    write_indexes,
)
from retrieval.encoders import load_encoder_as_built
from retrieval.encoders.vectors import is_vectors
from retrieval.errors import InputError
from retrieval.store.arrow import sha256_file, sparse_from_columns, write_parquet_atomic
from retrieval.store.format import (
    FORMAT_VERSION,
    labels_file,
    now_iso,
    open_vectors,
    read_parquet,
    vectors_file,
    write_vectors,
)
from retrieval.store.reader import StoredCollection
from retrieval.store.sharded import is_sharded
from retrieval.store.writing import write_atomically

log = logging.getLogger(__name__)
CHANGING = ("items.parquet", "texts.parquet", "manifest.json")
DUPLICATES = ("refuse", "skip", "allow")


def _not_sharded(folder, what: str) -> None:
    if is_sharded(folder):
        raise InputError(f"expected a collection folder to {what}, got the sharded collection {str(folder)!r}; "
                         f"sharded collections are not updated in place yet: rebuild it with --ray")


def _tables(col):
    """The stored tables without the embedding columns of formats 1 and 2 (format 3 keeps them in
    .npy files, written by _rewrite). Items of a collection built before content hashes were kept
    get theirs now, from their files (None where a file is gone)."""
    out = []
    for name, m in (("items.parquet", col.modality), ("texts.parquet", "text")):
        t = read_parquet(col.folder, name)
        t = t.drop_columns([f"{m}_vector"]) if f"{m}_vector" in t.column_names else t
        if name == "items.parquet" and HASH_COLUMN not in t.column_names:
            hashes = [sha256_file(p) if p and os.path.isfile(p) else None for p in t.column("path").to_pylist()]
            t = t.append_column(HASH_COLUMN, pa.array(hashes, pa.string()))
        out.append(t)
    return out


def _concat(old: pa.Table, new: pa.Table) -> pa.Table:
    """Old rows then new ones. Metadata columns that only one side has are null on the other; a
    column both have must hold the same type."""
    try:
        return pa.concat_tables([old, new], promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        have = ", ".join(f"{f.name} ({f.type})" for f in old.schema if f.name not in ("rel_indices", "rel_values"))
        raise InputError(f"expected the new rows' metadata columns to have the collection's types ({have}), got "
                         f"another: {exc}") from exc


def _duplicates(rows, old_items: pa.Table, duplicates: str):
    """Split new corpus rows into those to add and those whose content the collection already has
    (or that repeat an earlier new file), by SHA-256; ``duplicates`` says what to do with the latter."""
    if duplicates not in DUPLICATES:
        raise InputError(f"expected duplicates= one of {DUPLICATES}, got {duplicates!r}")
    have = dict(zip(old_items.column(HASH_COLUMN).to_pylist(), old_items.column("id").to_pylist()))
    keep, dup = [], []
    for r in rows:
        if r["sha256"] in have:
            dup.append((r, have[r["sha256"]]))
        else:
            have[r["sha256"]] = None  # a repeat inside this batch is a duplicate too
            keep.append(r)
    if not dup or duplicates == "allow":
        return rows, []
    why = [f"same content as item {i}" if i is not None else "repeats a file of this batch" for _, i in dup]
    said = [f"{r['path']} ({w})" for (r, _), w in zip(dup, why)]
    if duplicates == "refuse":
        raise InputError(f"expected files that are not in the collection yet, got {len(dup)} already there: "
                         f"{'; '.join(said[:5])}{' …' if len(said) > 5 else ''}. Nothing was added: pass "
                         f"--skip-duplicates (duplicates='skip') to add only the new files, or --allow-duplicates "
                         f"(duplicates='allow') to add them all again")
    if not keep:
        raise InputError(f"expected at least one new file to add, got {len(dup)} whose content the collection "
                         f"already has, e.g. {said[0]}")
    return keep, [{"path": r["path"], "reason": f"duplicate: {w}"} for (r, _), w in zip(dup, why)]


def _relative(col, table: pa.Table, modality: str):
    """The stored relative vectors of a table (recomputed from its embeddings for kind 'cosine')."""
    if col.kind == "asif":
        return sparse_from_columns(table.column("rel_indices"), table.column("rel_values"), len(col.anchor_captions))
    return col.projectors[modality].transform(col.sides[modality].abs)


def _next_ids(col) -> Dict[str, int]:
    given = col.manifest.get("next_ids")
    if given:
        return dict(given)
    return {"items": int(col.item_ids.max(initial=-1)) + 1, "texts": int(col.text_ids.max(initial=-1)) + 1}


def _rewrite(col, items: pa.Table, texts: pa.Table, item_rel, text_rel, changes: Dict, item_vecs, text_vecs,
             item_labels=None) -> Path:
    """``item_vecs`` / ``text_vecs`` (and ``item_labels`` when the collection has label vectors): the
    new rows as parts for :func:`write_vectors`."""
    folder, manifest, modality = col.folder, col.manifest, col.modality
    index_spec = {k: v for k, v in manifest["indexes"][f"{modality}_relative"].items() if k not in ("files", "items")}
    dense = manifest.get("dense_indexes", {})
    index_files = {f for spec in list(manifest["indexes"].values()) + list(dense.values()) for f in spec.get("files", [])}
    dense_spec = None
    if dense:  # rebuilt like the relative indexes, with the same factory and parameters
        first = dense[f"{modality}_absolute"]
        dense_spec = {k: v for k, v in first.items() if k not in ("files",)}

    def fill(tmp: Path) -> Dict:
        for name in manifest["files"]:
            if name in CHANGING or name in index_files or name in (vectors_file(modality), vectors_file("text"),
                                                                   labels_file(modality)):
                continue
            try:  # unchanged files: a hard link costs nothing, and files are never modified in place
                os.link(folder / name, tmp / name)
            except OSError:
                shutil.copy2(folder / name, tmp / name)
        write_parquet_atomic(items, str(tmp / "items.parquet"))
        write_parquet_atomic(texts, str(tmp / "texts.parquet"))
        write_vectors(tmp, modality, *item_vecs)
        write_vectors(tmp, "text", *text_vecs)
        if item_labels is not None:
            write_vectors(tmp, modality, *item_labels, name=labels_file(modality))
        indexes = write_indexes(tmp, index_spec, {f"{modality}_relative": item_rel, "text_relative": text_rel})
        out = {k: v for k, v in manifest.items() if k != "files"}
        if dense_spec is not None:
            vecs = open_vectors(tmp, modality, items.num_rows, manifest["encoders"][modality]["dim"])
            out["dense_indexes"] = write_dense_indexes(tmp, dense_spec, modality, vecs,
                                                       col.translators[("text", modality)])
        out["format_version"] = FORMAT_VERSION  # an older collection is written back in the current version
        captions = int(np.sum(np.asarray(texts.column("source").to_pylist()) == "corpus"))
        out.update(indexes=indexes, next_ids=changes.pop("next_ids"),
                   counts=dict(manifest["counts"], items=items.num_rows, texts=texts.num_rows, corpus_captions=captions,
                               skipped=manifest["counts"].get("skipped", 0) + len(changes.get("skipped", []))),
                   skipped=(manifest.get("skipped", []) + changes.pop("skipped", []))[:MAX_SKIPPED_LISTED],
                   updates=manifest.get("updates", []) + [dict(changes, time=now_iso())])
        return out

    return write_atomically(folder, fill, overwrite=True)


def add_items(folder, corpus, *, batch_size: int = 32, show_progress_bar: Optional[bool] = None,
              device: str = "cpu", duplicates: str = "refuse", captions_from: Optional[str] = None) -> Dict:
    """Encode the files of ``corpus`` (folder or table, as for a build) and append them to the
    collection at ``folder``; returns ``{"added": n, "ids": [...], "skipped": [...]}``.

    Files whose content (SHA-256) the collection already has are ``duplicates``: ``"refuse"`` (the
    default: an error that names them, nothing added), ``"skip"`` (add the others; the duplicates
    are listed as skipped) or ``"allow"`` (add them again). ``captions_from="names"``: a new file
    without a caption takes its name's words, as in a build.

    >>> add_items("indexes/photos", "new-photos/")  # doctest: +SKIP
    """
    _not_sharded(folder, "add to")
    if duplicates not in DUPLICATES:
        raise InputError(f"expected duplicates= one of {DUPLICATES}, got {duplicates!r}")
    col = StoredCollection.read(folder, device=device)
    modality = col.modality
    rows, skipped = load_corpus(corpus, modality, show_progress_bar,
                                vectors=is_vectors(col.manifest["encoders"][modality]["spec"]), captions_from=captions_from)
    old_items, old_texts = _tables(col)
    rows, dup = _duplicates(rows, old_items, duplicates)  # before encoding: a refusal costs nothing
    skipped = skipped + dup
    encoders = {m: load_encoder_as_built(col.manifest, m, device=device) for m in (modality, "text")}
    labels = None
    if col.item_labels is not None:  # new items get label vectors as the build made them
        from retrieval.encoders.labels import class_vectors

        lm = col.manifest["labels"]
        labels = {"classes": class_vectors(encoders["text"], encoders[modality].label_names), "temperature": lm["temperature"]}
    vecs, captioned, cap_vecs, new_labels = encode_corpus(rows, modality, encoders, batch_size=batch_size,
                                                          show_progress_bar=show_progress_bar, labels=labels)
    kind = col.kind
    rel = col.projectors[modality].transform(vecs)
    cap_rel = col.projectors["text"].transform(cap_vecs)
    nxt = _next_ids(col)
    ids = nxt["items"] + np.arange(len(rows))
    text_ids = nxt["texts"] + np.arange(len(captioned))
    items = _concat(old_items, items_table(ids, rows, rel, kind))
    new_texts = texts_table(text_ids, [rows[i]["caption"] for i in captioned], ["corpus"] * len(captioned),
                            ids[captioned], cap_rel, kind)
    texts = _concat(old_texts, new_texts)
    import scipy.sparse as sp

    item_rel = sp.vstack([_relative(col, old_items, modality), rel], format="csr") if kind == "asif" else None
    text_rel = sp.vstack([_relative(col, old_texts, "text"), cap_rel], format="csr") if kind == "asif" else None
    if kind != "asif":  # dense relative vectors are not stored: recompute from all embeddings
        item_rel = col.projectors[modality].transform(np.vstack([col.sides[modality].abs, vecs]))
        text_rel = col.projectors["text"].transform(np.vstack([col.sides["text"].abs, cap_vecs]))
    _rewrite(col, items, texts, item_rel, text_rel,
             {"op": "add", "source": str(corpus), "items": len(rows), "skipped": skipped,
              "next_ids": {"items": int(nxt["items"] + len(rows)), "texts": int(nxt["texts"] + len(captioned))}},
             [col.sides[modality].abs, vecs], [col.sides["text"].abs, cap_vecs],
             None if col.item_labels is None else [col.item_labels, new_labels])
    log.info("added %d items to %s", len(rows), folder)
    return {"added": len(rows), "ids": ids.tolist(), "skipped": skipped}


def delete_items(folder, ids: Iterable[int]) -> Dict:
    """Remove items (and their corpus captions) by id; returns ``{"deleted": n}``. Unknown ids are
    an error that names them, and nothing is changed."""
    _not_sharded(folder, "delete from")
    col = StoredCollection.read(folder)
    want = np.unique(np.asarray(list(ids), dtype=np.int64))
    if want.size == 0:
        raise InputError("expected at least one item id to delete, got none")
    unknown = want[~np.isin(want, col.item_ids)]
    if unknown.size:
        raise InputError(f"expected ids of items in {str(folder)!r}, got {unknown.size} unknown: "
                         f"{unknown[:10].tolist()}{' …' if unknown.size > 10 else ''}")
    if want.size == col.item_ids.size:
        raise InputError(f"expected to keep at least one item; deleting all {want.size} would leave an empty "
                         f"collection (delete the folder instead)")
    old_items, old_texts = _tables(col)
    keep_items = ~np.isin(col.item_ids, want)
    text_item = np.asarray(old_texts.column("item_id").to_pylist(), np.int64)
    keep_texts = ~np.isin(text_item, want)
    modality = col.modality
    item_rel = _relative(col, old_items, modality)[np.flatnonzero(keep_items)]
    text_rel = _relative(col, old_texts, "text")[np.flatnonzero(keep_texts)]
    items = old_items.filter(pa.array(keep_items))
    texts = old_texts.filter(pa.array(keep_texts))
    _rewrite(col, items, texts, item_rel, text_rel,
             {"op": "delete", "items": int(want.size), "ids": want[:MAX_SKIPPED_LISTED].tolist(),
              "next_ids": _next_ids(col)},
             [(col.sides[modality].abs, np.flatnonzero(keep_items))], [(col.sides["text"].abs, np.flatnonzero(keep_texts))],
             None if col.item_labels is None else [(col.item_labels, np.flatnonzero(keep_items))])
    return {"deleted": int(want.size)}
