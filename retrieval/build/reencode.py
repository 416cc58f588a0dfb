"""Upgrade a collection's encoder in place: encode the corpus again in chunks, resumable, atomic.

``retrieval reencode indexes/A --image-encoder SPEC`` encodes every item (and, with a new text
encoder, every corpus caption) with the new encoders, a chunk at a time, into a work folder beside
the collection (``.A.reencode/``); a chunk is written to a temporary file and renamed, so a run
that is killed keeps every finished chunk and the next run with the same settings starts after
them. The anchors are encoded by the new encoders too (they must be readable, as for stitching).
When every chunk is there the collection is written again, exactly as a fresh build with the new
encoders and the collection's own settings (k, p, centring, index backends) would write it (ids,
metadata and pivot sets kept), and renamed into place; the work folder is removed.

Meanwhile the old collection is untouched and answers as before; queries encoded by the new encoder
reach it through the anchors (``search --image-encoder SPEC``: zero-shot stitching).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from retrieval.build.anchors import AnchorSet, stored_anchor_set
from retrieval.build.builder import label_setup
from retrieval.build.options import BuildOptions
from retrieval.build.reanchor import _given, remake
from retrieval.build.recipe import label_weight
from retrieval.build.self_anchors import given_count
from retrieval.encoders import load_encoder
from retrieval.encoders.vectors import is_vectors
from retrieval.errors import InputError
from retrieval.progress import progress
from retrieval.store.format import now_iso
from retrieval.store.projectors import summary as projector_summary
from retrieval.store.reader import StoredCollection
from retrieval.store.sharded import is_sharded
from retrieval.store.writing import check_output

log = logging.getLogger(__name__)
DEFAULT_CHUNK = 2048
STATE = "state.json"


def work_folder(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.reencode"


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.ascontiguousarray(array, np.float32), allow_pickle=False)
    os.replace(tmp, path)  # a chunk is either whole or absent


def _load(path: Path, rows: int, dim: Optional[int]) -> Optional[np.ndarray]:
    """A finished chunk, or None when absent or not what this run would write (then it is redone)."""
    if not path.is_file():
        return None
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return x if x.dtype == np.float32 and x.shape[0] == rows and (dim is None or x.shape[1] == dim) else None


def reencode(folder, out=None, options: Optional[BuildOptions] = None, *, chunk: int = DEFAULT_CHUNK,
             restart: bool = False, **changes) -> Path:
    """Encode the corpus of the collection at ``folder`` with the encoders the options name
    (``image_encoder=``, ``text_encoder=``, ``audio_encoder=``; the others are kept) and write the
    collection again (default: in place). See the module docstring.

    >>> reencode("indexes/photos", image_encoder="efficientnet-lite2")  # doctest: +SKIP
    """
    src = Path(folder)
    if is_sharded(src):
        raise InputError(f"expected a collection folder to reencode, got the sharded collection {str(src)!r}; "
                         f"build it again with --ray and the new encoders")
    if not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"expected a chunk size >= 1, got {chunk!r}")
    given = _given(options, changes)
    col = StoredCollection.read(src)
    o, new = _settings(col, BuildOptions.of(options, **changes), given)
    anchor_set = _anchors(src, col)
    o = _keep_bank(col.manifest, o, given)
    _check_files(col)
    target = check_output(src if out is None else out, overwrite=o.overwrite or out is None
                          or Path(out).resolve() == src.resolve())  # refused now, not after the encoding
    encoders, remake_encoders, label_cfg = _encoders(col, new, anchor_set, o)
    state = {"encoders": {x: e.name for x, e in encoders.items()}, "chunk": int(chunk),
             "rows": hashlib.sha256("\n".join(col.items["path"]).encode("utf-8")).hexdigest(), "labels": o.labels}
    work = _open_work(work_folder(src), state, restart)
    corpus = _encode_chunks(col, encoders, label_cfg, work, chunk, o)
    specs = {x: e["spec"] for x, e in col.manifest["encoders"].items()}
    record = {"reencoded": {"at": now_iso(), "from": {x: specs[x] for x in encoders},
                            "to": {x: e.name for x, e in encoders.items()}}}
    # Label vectors are points in the text encoder's space, made from the image network's head: kept
    # only when neither changed; made again when the image network did; dropped (and said) when only
    # the text encoder changed, since that would need the images' logits again.
    if corpus["labels"] is None and col.modality not in encoders and col.item_labels is not None:
        record["reencoded"]["labels_dropped"] = "the text encoder changed; reencode the images too to keep them"
    path = remake(col, anchor_set, target, o, given, record=record, encoders=remake_encoders, corpus=corpus)
    shutil.rmtree(work, ignore_errors=True)
    log.info("reencoded %s with %s -> %s", src, record["reencoded"]["to"], path)
    return path


def _settings(col: StoredCollection, o: BuildOptions, given) -> Tuple[BuildOptions, Dict[str, str]]:
    """The options with the collection's projector settings where not given (the anchors do not
    change: neither does how vectors are made from them, unless asked), and the encoders that change."""
    m, modality = col.manifest, col.modality
    built = projector_summary(m)  # absent from the manifest: "center" and "whiten" were off
    o = o.replace(**{f: built.get(f, {"center": False, "whiten": 0.0}.get(f))
                     for f in ("k", "p", "kind", "center", "whiten") if f not in given})
    specs = {x: e["spec"] for x, e in m["encoders"].items()}
    new = {x: getattr(o, f"{x}_encoder") for x in (modality, "text") if f"{x}_encoder" in given
           and getattr(o, f"{x}_encoder") != specs[x]}
    if not new:
        raise InputError(f"expected an encoder other than the collection's ({specs}) to reencode with, got none; "
                         f"pass --{modality}-encoder or --text-encoder (pivot sets keep their own encoders)")
    brought = [spec for spec in new.values() if is_vectors(spec)]
    if brought:
        raise InputError(f"expected a model to reencode with, got {brought[0]!r}: reencode encodes the collection's "
                         f"files again; for vectors made elsewhere, build from tables with an embedding column "
                         f"(docs/cli.md, 'Your own vectors')")
    return o, new


def _anchors(src: Path, col: StoredCollection) -> AnchorSet:
    """The collection's anchors, to encode with the new encoders; the stored rows without the
    corpus's own (self-anchoring makes them again) and the background bank's (encoded again as a
    build would)."""
    m, modality = col.manifest, col.modality
    anchor_set = stored_anchor_set(src, m, modality, "encode them with the new encoder")
    n = given_count(m["anchors"])
    if n < len(anchor_set) and anchor_set.source == str(src / "anchors.parquet"):
        anchor_set = AnchorSet(anchor_set.paths[:n], anchor_set.captions[:n], source=anchor_set.source,
                               modality=modality)
    return anchor_set


def _keep_bank(m: Dict, o: BuildOptions, given) -> BuildOptions:
    """The background bank as built (or none), unless another was given; its weight as built too,
    unless given or chosen again by --tune."""
    bank = m["anchors"].get("background")
    if "background" in given:
        return o
    keep_weight = bank and "background_weight" not in given and not o.tune
    return o.replace(background=bank["source"] if bank else "none",
                     **({"background_weight": bank["weight"]} if keep_weight else {}))


def _check_files(col: StoredCollection) -> None:
    paths = col.items["path"]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"expected the collection's {len(paths)} {col.modality} files to encode them again, but "
                         f"{len(missing)} are missing (e.g. {missing[0]!r}); delete those items first "
                         f"('retrieval delete') or rebuild from the corpus you have")


def _encoders(col: StoredCollection, new: Dict[str, str], anchor_set: AnchorSet, o: BuildOptions):
    """(the new encoders, those the rewrite uses, the label bridge's setup or None): label vectors come
    from the new network's head, as a fresh build with the new encoder would make them."""
    modality = col.modality
    encoders = {x: load_encoder(spec, x, device=o.device) for x, spec in new.items()}
    remake_encoders, label_cfg = dict(encoders), None
    if modality in encoders:
        text_spec = col.manifest["encoders"]["text"]["spec"]
        text_enc = encoders.get("text") or load_encoder(text_spec, "text", device=o.device)
        remake_encoders["text"] = text_enc  # loaded once: the anchors' captions are encoded with it later
        label_cfg = label_setup({modality: encoders[modality], "text": text_enc}, modality, o.labels,
                                label_weight(anchor_set, o), o.cache_dir)
    return encoders, remake_encoders, label_cfg


def _open_work(work: Path, state: Dict, restart: bool) -> Path:
    """The work folder, resumed when it holds a reencode of the same settings (refused when of others)."""
    if restart and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / STATE
    if not state_file.is_file():
        state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")
        return work
    try:
        before = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        before = None
    if before != state:
        raise InputError(f"expected {str(work)!r} to hold a reencode of the same settings, but it was started "
                         f"with others ({before}); pass restart=True (--restart) to discard it")
    log.info("resuming the reencode in %s", work)
    return work


def _encode_chunks(col: StoredCollection, encoders: Dict, label_cfg, work: Path, chunk: int, o: BuildOptions) -> Dict:
    """The corpus encoded again a chunk at a time, each chunk kept in ``work`` (a finished one is read
    back instead of encoded): what :func:`remake` takes as ``corpus``."""
    modality, paths, captions = col.modality, col.items["path"], col.items["caption"]
    n = len(paths)
    starts = list(range(0, n, chunk))
    item_parts, cap_parts, label_parts = [], [], []
    bar = progress(None, total=len(starts), desc=f"reencode {modality} in chunks of {chunk}", show=o.show_progress_bar)
    for c, s in enumerate(starts):
        rows = slice(s, min(n, s + chunk))
        if modality in encoders:
            x, lab = _item_chunk(encoders[modality], paths[rows], label_cfg, work, c, o.batch_size)
            item_parts.append(x)
            label_parts += [lab] if lab is not None else []
        if "text" in encoders:
            cap_parts.append(_caption_chunk(encoders["text"], captions[rows], work, c, o.batch_size))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return {"item_vecs": np.vstack(item_parts) if item_parts else np.asarray(col.sides[modality].abs),
            "cap_vecs": np.vstack(cap_parts) if cap_parts else None,
            "labels": np.vstack(label_parts) if label_parts else None, "label_cfg": label_cfg}


def _item_chunk(enc, paths, label_cfg, work: Path, c: int, batch_size: int):
    """(item vectors, label vectors or None) of chunk ``c``: read back when finished, else encoded."""
    f_items, f_labels = work / f"items-{c:05d}.npy", work / f"labels-{c:05d}.npy"
    x = _load(f_items, len(paths), enc.dim)
    lab = _load(f_labels, len(paths), None) if label_cfg is not None else None
    if x is not None and (label_cfg is None or lab is not None):
        return x, lab
    if label_cfg is not None:
        from retrieval.encoders.labels import label_vectors

        x, logits = enc.encode_labelled(paths, batch_size=batch_size, show_progress_bar=False)
        lab = label_vectors(logits, label_cfg["classes"], label_cfg["temperature"])
        _save(f_labels, lab)
    else:
        x = enc.encode(paths, batch_size=batch_size, show_progress_bar=False)
    _save(f_items, x)
    return x, lab


def _caption_chunk(enc, captions, work: Path, c: int, batch_size: int) -> np.ndarray:
    texts = [t for t in captions if t and t.strip()]
    f_caps = work / f"captions-{c:05d}.npy"
    y = _load(f_caps, len(texts), enc.dim)
    if y is None:
        y = (enc.encode(texts, batch_size=batch_size, show_progress_bar=False) if texts
             else np.zeros((0, enc.dim), np.float32))
        _save(f_caps, y)
    return y
