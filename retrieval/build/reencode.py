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
from typing import Optional

import numpy as np

from retrieval.build.anchors import AnchorSet, stored_anchor_set
from retrieval.build.builder import label_setup
from retrieval.build.options import BuildOptions
from retrieval.build.reanchor import _given, remake
from retrieval.build.recipe import label_weight
from retrieval.encoders import load_encoder
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
    o = BuildOptions.of(options, **changes)
    col = StoredCollection.read(src)
    m, modality = col.manifest, col.modality
    # the anchors do not change: neither does how vectors are made from them, unless asked
    # (absent from the manifest: "center" and "whiten" were off)
    built = projector_summary(m)
    o = o.replace(**{f: built.get(f, {"center": False, "whiten": 0.0}.get(f))
                     for f in ("k", "p", "kind", "center", "whiten") if f not in given})
    specs = {x: e["spec"] for x, e in m["encoders"].items()}
    new = {x: getattr(o, f"{x}_encoder") for x in (modality, "text") if f"{x}_encoder" in given
           and getattr(o, f"{x}_encoder") != specs[x]}
    if not new:
        raise InputError(f"expected an encoder other than the collection's ({specs}) to reencode with, got none; "
                         f"pass --{modality}-encoder or --text-encoder (pivot sets keep their own encoders)")
    anchor_set = stored_anchor_set(src, m, modality, "encode them with the new encoder")
    # the background bank as built (or none), encoded again with the new encoders
    bank = m["anchors"].get("background")
    if "background" not in given:
        o = o.replace(background=bank["source"] if bank else "none",
                      **({"background_weight": bank["weight"]} if bank and "background_weight" not in given else {}))
    if bank and anchor_set.source == str(src / "anchors.parquet"):  # the stored rows: the bank's come last
        n = int(m["anchors"]["count"])
        anchor_set = AnchorSet(anchor_set.paths[:n], anchor_set.captions[:n], source=anchor_set.source,
                               modality=modality)
    paths = col.items["path"]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise InputError(f"expected the collection's {len(paths)} {modality} files to encode them again, but "
                         f"{len(missing)} are missing (e.g. {missing[0]!r}); delete those items first "
                         f"('retrieval delete') or rebuild from the corpus you have")
    target = check_output(src if out is None else out, overwrite=o.overwrite or out is None
                          or Path(out).resolve() == src.resolve())  # refused now, not after the encoding
    encoders = {x: load_encoder(spec, x, device=o.device) for x, spec in new.items()}
    remake_encoders = dict(encoders)
    label_cfg = None
    if modality in encoders:  # label vectors come from the new network's head
        weight = label_weight(anchor_set, o)
        text_enc = encoders.get("text") or load_encoder(specs["text"], "text", device=o.device)
        remake_encoders["text"] = text_enc  # loaded once: the anchors' captions are encoded with it below
        label_cfg = label_setup({modality: encoders[modality], "text": text_enc}, modality, o.labels, weight,
                                o.cache_dir)  # as a fresh build with the new encoder would

    work = work_folder(src)
    state = {"encoders": {x: e.name for x, e in encoders.items()}, "chunk": int(chunk),
             "rows": hashlib.sha256("\n".join(paths).encode("utf-8")).hexdigest(), "labels": o.labels}
    if restart and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / STATE
    if state_file.is_file():
        try:
            before = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before != state:
            raise InputError(f"expected {str(work)!r} to hold a reencode of the same settings, but it was started "
                             f"with others ({before}); pass restart=True (--restart) to discard it")
        log.info("resuming the reencode in %s", work)
    else:
        state_file.write_text(json.dumps(state, indent=2), encoding="utf-8")

    captions = col.items["caption"]
    n = len(paths)
    starts = list(range(0, n, chunk))
    item_parts, cap_parts, label_parts = [], [], []
    bar = progress(None, total=len(starts), desc=f"reencode {modality} in chunks of {chunk}", show=o.show_progress_bar)
    for c, s in enumerate(starts):
        rows = slice(s, min(n, s + chunk))
        count = rows.stop - rows.start
        if modality in encoders:
            enc = encoders[modality]
            f_items, f_labels = work / f"items-{c:05d}.npy", work / f"labels-{c:05d}.npy"
            x = _load(f_items, count, enc.dim)
            lab = _load(f_labels, count, None) if label_cfg is not None else None
            if x is None or (label_cfg is not None and lab is None):
                if label_cfg is not None:
                    from retrieval.encoders.labels import label_vectors

                    x, logits = enc.encode_labelled(paths[rows], batch_size=o.batch_size, show_progress_bar=False)
                    lab = label_vectors(logits, label_cfg["classes"], label_cfg["temperature"])
                    _save(f_labels, lab)
                else:
                    x = enc.encode(paths[rows], batch_size=o.batch_size, show_progress_bar=False)
                _save(f_items, x)
            item_parts.append(x)
            if label_cfg is not None:
                label_parts.append(lab)
        if "text" in encoders:
            texts = [t for t in captions[rows] if t and t.strip()]
            f_caps = work / f"captions-{c:05d}.npy"
            y = _load(f_caps, len(texts), encoders["text"].dim)
            if y is None:
                y = (encoders["text"].encode(texts, batch_size=o.batch_size, show_progress_bar=False) if texts
                     else np.zeros((0, encoders["text"].dim), np.float32))
                _save(f_caps, y)
            cap_parts.append(y)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    # Label vectors are points in the text encoder's space, made from the image network's head: kept
    # only when neither changed; made again when the image network did; dropped (and said) when only
    # the text encoder changed, since that would need the images' logits again.
    labels = np.vstack(label_parts) if label_parts else None
    record = {"reencoded": {"at": now_iso(), "from": {x: specs[x] for x in encoders},
                            "to": {x: e.name for x, e in encoders.items()}}}
    if labels is None and modality not in encoders and col.item_labels is not None:
        record["reencoded"]["labels_dropped"] = "the text encoder changed; reencode the images too to keep them"
    corpus = {"item_vecs": np.vstack(item_parts) if item_parts else np.asarray(col.sides[modality].abs),
              "cap_vecs": np.vstack(cap_parts) if cap_parts else None, "labels": labels, "label_cfg": label_cfg}
    path = remake(col, anchor_set, target, o, given, record=record, encoders=remake_encoders, corpus=corpus)
    shutil.rmtree(work, ignore_errors=True)
    log.info("reencoded %s with %s -> %s", src, record["reencoded"]["to"], path)
    return path
