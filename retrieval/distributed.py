"""More than one machine: a distributed build on Ray, and sharded collections searched as one.

Nothing here is imported unless asked for (``retrieval build --ray``, a sharded folder opened):
Ray is an optional extra (``pip install 'retrieval[ray]'``).

**Build** (:func:`build_sharded`). The driver checks the corpus and encodes the anchors (small,
cached); the corpus goes to Ray as a Dataset and ``map_batches`` runs it through a pool of actors,
each loading the encoders once and relativising against the anchors, which are put in the object
store once and handed to every actor's constructor (not shipped with each batch). Results stream
back in corpus order; every ``shard_size`` items the driver writes a *shard*: a normal collection
folder (:func:`retrieval.build.builder.write_collection`), atomically, with the items' global ids.

**Resuming.** The build works in ``OUT.partial/``, whose ``run.json`` records a hash of everything
that decides the result (corpus listing, anchors, encoders, k, p, index, shard size). A build that
dies (driver or workers) is started again with the same command: shards already written are kept
and only the missing ones are encoded. A partial folder of *different* settings is refused, never
mixed in. When every shard is there, the top-level manifest is written and ``OUT.partial`` is
renamed to ``OUT``.

The folders it writes are searched as one collection by :class:`retrieval.api.sharded.ShardedCollection`
(the format: :mod:`retrieval.store.sharded`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from retrieval.api.cluster import connect
from retrieval.build.anchors import AnchorSet, encode_anchors, load_anchor_set, prepare_views
from retrieval.build.builder import names_as_captions, readable_media
from retrieval.build.options import BuildOptions, check_captions_from, parse_index_spec
from retrieval.build.recipe import Recipe, recipe
from retrieval.build.self_anchors import wanted
from retrieval.build.writer import Clock, Contents, write_collection
from retrieval.core.projector import fit_projector, spec_summary
from retrieval.encoders import encoder_meta, load_encoder
from retrieval.errors import CollectionFormatError, InputError
from retrieval.media.tables import rows_from
from retrieval.progress import progress
from retrieval.store.arrow import sha256_file
from retrieval.store.format import now_iso, read_manifest, write_manifest
from retrieval.store.sharded import SHARDED_FORMAT, SHARDED_VERSION
from retrieval.store.writing import check_output

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 100_000
RUN_FILE = "run.json"


# ---- the workers' side ---------------------------------------------------------------------------

class _Check:
    """Ray actor body: which corpus rows decode (the build's readability check, on the workers)."""

    def __init__(self, modality: str, setup: Optional[Callable] = None):
        if setup is not None:
            setup()
        self.modality = modality

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        rows = [{"path": str(p), "caption": None, "label": None} for p in batch["path"]]
        _, skipped = readable_media(rows, self.modality, show_progress_bar=False)
        reasons = {s["path"]: s["reason"] for s in skipped}
        return {"row": batch["row"], "reason": np.array([reasons.get(r["path"], "") for r in rows], dtype=object)}


class _Encode:
    """Ray actor body: encoders loaded once per actor, anchors fitted once per actor."""

    def __init__(self, modality: str, specs: Dict[str, str], anchors: Dict[str, np.ndarray], projector: Dict,
                 batch_size: int, device: str, setup: Optional[Callable] = None):
        if setup is not None:
            setup()
        import ray

        if isinstance(anchors, ray.ObjectRef):  # put in the object store once by the driver; fetched once here
            anchors = ray.get(anchors)
        self.modality, self.batch_size, self.k = modality, batch_size, int(spec_summary(projector[modality])["k"])
        self.encoders = {m: load_encoder(specs[m], m, device=device) for m in (modality, "text")}
        style = anchors.get("style")  # the driver's style normaliser (views), applied to the items' modality
        self.projectors = {m: fit_projector(projector[m], anchors[m], style=style if m == modality else None)
                           for m in (modality, "text")}

    def _rel(self, m: str, x: np.ndarray, rows: Optional[np.ndarray] = None):
        """Relative vectors as fixed-width (n, k) columns, padded with anchor -1 (rows can hold
        fewer than k non-zeros when similarities clamp to 0). Only ``rows`` (a mask) are computed;
        the others stay empty."""
        n = len(x)
        idx = np.full((n, self.k), -1, np.int32)
        val = np.zeros((n, self.k), np.float32)
        rows = np.ones(n, bool) if rows is None else rows
        if rows.any():
            rel = self.projectors[m].transform(x[rows])
            counts = np.diff(rel.indptr)
            r = np.repeat(np.flatnonzero(rows), counts)
            pos = np.arange(rel.nnz) - np.repeat(rel.indptr[:-1], counts)
            idx[r, pos], val[r, pos] = rel.indices, rel.data
        return idx, val

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        captions = [c if isinstance(c, str) else "" for c in batch["caption"]]
        vecs = self.encoders[self.modality].encode(paths, batch_size=self.batch_size, show_progress_bar=False)
        has = np.array([bool(c.strip()) for c in captions])
        width = self.encoders["text"].dim
        cap = np.zeros((len(paths), width), np.float32)
        if has.any():
            cap[has] = self.encoders["text"].encode([c for c, h in zip(captions, has) if h],
                                                    batch_size=self.batch_size, show_progress_bar=False)
        ri, rv = self._rel(self.modality, vecs)
        ci, cv = self._rel("text", cap, has)  # rows without a caption are not relativised
        return {"row": batch["row"], "vec": vecs.astype(np.float32), "rel_idx": ri, "rel_val": rv,
                "has_caption": has, "cap": cap, "cap_idx": ci, "cap_val": cv}


# ---- the driver's side ---------------------------------------------------------------------------

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _csr(idx: np.ndarray, val: np.ndarray, n_anchors: int):
    import scipy.sparse as sp

    keep = idx >= 0
    indptr = np.concatenate([[0], np.cumsum(keep.sum(1))]).astype(np.int64)
    return sp.csr_matrix((val[keep], idx[keep], indptr), shape=(len(idx), n_anchors))


def _shard_len(s: int, shard_size: int, n: int) -> int:
    return min(n, (s + 1) * shard_size) - s * shard_size


def _shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def _finished_shards(work: Path, run_id: str) -> Dict[int, Dict]:
    """Shards already written by this run (their manifests verified); leftovers of an interrupted
    write (temporary folders) are removed."""
    done = {}
    for entry in sorted(work.iterdir()):
        if entry.name.startswith(".shard-"):
            shutil.rmtree(entry, ignore_errors=True)  # a shard being written when the build died
        elif entry.is_dir() and entry.name.startswith("shard-"):
            try:
                m = read_manifest(entry)
            except (CollectionFormatError, InputError):
                shutil.rmtree(entry, ignore_errors=True)
                continue
            if m.get("shard", {}).get("run") == run_id:
                done[int(entry.name.split("-")[1])] = m
            else:
                raise InputError(f"expected the shards in {str(work)!r} to come from one run, but {entry.name} "
                                 f"was written by another; remove the folder or pass restart=True (--restart)")
    return done


def build_sharded(corpus, anchors, out, options: Optional[BuildOptions] = None, *, address: Optional[str] = None,
                  shard_size: int = DEFAULT_SHARD_SIZE, workers: Optional[int] = None, restart: bool = False,
                  worker_setup: Optional[Callable] = None, ray_init: Optional[Dict] = None, **changes) -> Path:
    """Build a sharded collection on Ray; returns its folder (see the module docstring).

    ``address``: a Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) or None for a
    local one. ``workers``: encoding actors (default: one per CPU of the cluster, or per GPU when
    it has GPUs). ``worker_setup``: a function each worker runs once before loading encoders, e.g.
    to register a custom encoder backend. ``restart`` discards a partial build of other settings.
    The build's settings are :class:`~retrieval.build.options.BuildOptions` (or its fields as
    keywords), as for :func:`retrieval.build.builder.build_collection`; what shards do not support
    yet (pivot sets, dense indexes, cosine relative vectors, label vectors) is refused.

    >>> build_sharded("corpus/", "anchors.parquet", "indexes/big", address="auto")  # doctest: +SKIP
    """
    o = BuildOptions.of(options, **changes)
    o.check_sharded()
    out = check_output(out, o.overwrite)
    work = out.parent / f"{out.name}.partial"
    if not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise InputError(f"expected a shard size >= 1, got {shard_size!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InputError(f"expected workers >= 1 (encoding actors), got {workers!r}")
    index_spec = parse_index_spec(o.index)
    anchor_set = anchors if isinstance(anchors, AnchorSet) else load_anchor_set(anchors)
    modality = anchor_set.modality
    # views of one concept (a 'concept' column with repeats) become one anchor, as in a one-process build
    specs = {"image": o.image_encoder, "text": o.text_encoder, "audio": o.audio_encoder}
    rec = recipe(anchor_set, specs[modality], o)
    projector = rec.specs(modality, style=anchor_set.has_views)  # a distributed build has no background bank
    specs = {m: specs[m] for m in (modality, "text")}
    _, rows = rows_from(corpus, caption_required=False, what="corpus", modality=modality)
    check_captions_from(o.captions_from)
    if o.captions_from == "names":  # embedded captions are not read here: that would open every file first
        names_as_captions(rows)
    if wanted(o, modality) and any(r["caption"] and str(r["caption"]).strip() for r in rows):
        log.warning("a sharded build does not make anchors of the corpus's captions (self-anchoring) yet: the "
                    "captioned items are found by their captions as texts only; a one-process build does both")

    settings = {"format": SHARDED_VERSION, "corpus": [(r["path"], r["caption"], r["label"]) for r in rows],
                "anchors": anchor_set.content_hash, "encoders": specs, "projector": projector, "index": index_spec,
                "shard_size": int(shard_size)}
    run_id = _digest(settings)
    ray = connect(address, **(ray_init or {}))  # before the work folder: a cluster not reached leaves nothing
    import ray.data  # noqa: F401, F811  (Ray Data is part of the extra)

    if restart and work.exists():
        shutil.rmtree(work)
    fresh = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    run_file = work / RUN_FILE
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"expected {str(run_file)!r} to be the JSON a partial build writes, it is damaged "
                             f"({exc}); pass restart=True (--restart) to start over") from exc
        if not isinstance(previous, dict) or previous.get("run") != run_id:
            raise InputError(f"expected {str(work)!r} to hold a partial build of the same settings, but it was "
                             f"started with other ones (corpus, anchors, encoders, k, p, index or shard size "
                             f"differ); pass restart=True (--restart) to discard it")
        log.info("resuming the build in %s", work)
    else:
        run_file.write_text(json.dumps({"run": run_id, "started": _now(), "corpus": str(corpus)}, indent=2),
                            encoding="utf-8")

    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order,
             {a: getattr(ctx, a) for a in ("enable_progress_bars", "enable_operator_progress_bars") if hasattr(ctx, a)})
    ctx.execution_options.preserve_order = True  # shards are contiguous runs of the corpus
    for attr in saved[1]:
        if o.show_progress_bar is False:
            setattr(ctx, attr, False)
    try:
        return _run(_Job(ray=ray, work=work, run_file=run_file, run_id=run_id, out=out, corpus=corpus, rows=rows,
                         anchor_set=anchor_set, modality=modality, specs=specs, projector=projector, rec=rec,
                         index_spec=index_spec, shard_size=shard_size, workers=workers, options=o,
                         worker_setup=worker_setup))
    except InputError:
        if fresh and not any(work.glob("shard-*")):  # nothing worth resuming: leave no litter
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:  # Ray's data context is process-wide: leave it as it was
        ctx.execution_options.preserve_order = saved[0]
        for attr, value in saved[1].items():
            setattr(ctx, attr, value)


@dataclass
class _Job:
    """A sharded build once its settings are checked and its work folder is claimed."""

    ray: object
    work: Path
    run_file: Path
    run_id: str
    out: Path
    corpus: object
    rows: List[Dict]
    anchor_set: AnchorSet
    modality: str
    specs: Dict[str, str]
    projector: Dict
    rec: Recipe
    index_spec: Dict
    shard_size: int
    workers: Optional[int]
    options: BuildOptions
    worker_setup: Optional[Callable]


def _run(job: _Job) -> Path:
    """The build itself, once settings are checked and the work folder is claimed: which files decode,
    the anchors, the shards still to write, then the top-level manifest and the folder into place."""
    clock = Clock()
    rows, skipped = _checked_rows(job)
    clock.lap("check_files")
    anchors = _encoded_anchors(job)
    clock.lap("encode_anchors")
    n_shards = _encode_shards(job, rows, anchors)
    clock.lap("encode_corpus")
    _finish(job, rows, skipped, anchors, n_shards, clock)
    return job.out


def _checked_rows(job: _Job) -> Tuple[List[Dict], List[Dict]]:
    """(the rows whose files decode, the skipped ones with why): checked in parallel on the workers;
    decides the items' ids, as a one-process build does. Kept in the work folder, so that a resumed
    build does not decode everything again."""
    ray, rows, o = job.ray, job.rows, job.options
    checked_file = job.work / "checked.json"
    if checked_file.is_file():
        reasons = json.loads(checked_file.read_text(encoding="utf-8"))
    else:
        checked = (ray.data.from_items([{"row": i, "path": r["path"]} for i, r in enumerate(rows)])
                   .map_batches(_Check, fn_constructor_kwargs={"modality": job.modality, "setup": job.worker_setup},
                                batch_size=max(1, o.batch_size), compute=_pool(ray, job.workers), batch_format="numpy"))
        reasons = [""] * len(rows)
        for b in checked.iter_batches(batch_size=None, batch_format="numpy"):
            for r, why in zip(b["row"].tolist(), b["reason"].tolist()):
                reasons[r] = why
        tmp = checked_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(reasons), encoding="utf-8")
        os.replace(tmp, checked_file)
    skipped = [{"path": rows[i]["path"], "reason": why} for i, why in enumerate(reasons) if why]
    rows = [r for r, why in zip(rows, reasons) if not why]
    if not rows:
        raise InputError(f"expected at least one readable {job.modality} file in the corpus {str(job.corpus)!r}, "
                         f"all {len(skipped)} failed, e.g. {skipped[0]['reason'] if skipped else 'none listed'}")
    return rows, skipped


def _encoded_anchors(job: _Job) -> Contents:
    """The anchors encoded on the driver (cached by content hash) and their views merged, as the
    anchor fields (and settings) of every shard's :class:`Contents`."""
    o, modality = job.options, job.modality
    enc_kw = dict(cache_dir=o.cache_dir, batch_size=o.batch_size, show_progress_bar=o.show_progress_bar)
    if job.worker_setup is not None:
        job.worker_setup()
    encoders = {m: load_encoder(job.specs[m], m, device=o.device) for m in (modality, "text")}
    a_med = encode_anchors(job.anchor_set, encoders[modality], modality, **enc_kw)
    a_txt = encode_anchors(job.anchor_set, encoders["text"], "text", **enc_kw)
    views = len(job.anchor_set)
    anchor_set, a_med, a_txt, style = prepare_views(job.anchor_set, a_med, a_txt)  # fitted once, here
    return Contents(rows=[], item_vecs=np.zeros((0, a_med.shape[1]), np.float32), captioned=[], cap_vecs=None,
                    anchor_set=anchor_set, anchor_vecs=(a_med, a_txt),
                    encoders={m: encoder_meta(e) for m, e in encoders.items()}, rec=job.rec,
                    index_spec=job.index_spec, style=style, anchor_views=views, corpus=str(job.corpus))


def _encode_shards(job: _Job, rows: List[Dict], anchors: Contents) -> int:
    """The shards still to write, their rows encoded through the actor pool in corpus order and each
    written as soon as its last row is in; returns how many shards the collection has."""
    ray, o, shard_size = job.ray, job.options, job.shard_size
    n_shards = (len(rows) + shard_size - 1) // shard_size
    done = _finished_shards(job.work, job.run_id)
    todo = [s for s in range(n_shards) if s not in done]
    log.info("%d shard(s) of %d items: %d written before, %d to build", n_shards, shard_size, len(done), len(todo))
    pending_rows = [i for s in todo for i in range(s * shard_size, min(len(rows), (s + 1) * shard_size))]
    if not pending_rows:
        return n_shards
    a_med, a_txt = anchors.anchor_vecs
    ds = ray.data.from_items([{"row": i, "path": rows[i]["path"], "caption": rows[i]["caption"] or ""}
                              for i in pending_rows])
    resources = _resources(ray)
    encoded = ds.map_batches(_Encode, fn_constructor_kwargs={
        "modality": job.modality, "specs": job.specs,
        "anchors": ray.put({job.modality: a_med, "text": a_txt, "style": anchors.style}), "projector": job.projector,
        "batch_size": o.batch_size, "device": "cuda" if "num_gpus" in resources else o.device,
        "setup": job.worker_setup},
        batch_size=max(1, o.batch_size), compute=_pool(ray, job.workers), batch_format="numpy", **resources)
    buf: Dict[str, List[np.ndarray]] = {}
    held = 0  # rows in buf
    queue = list(todo)
    bar = progress(None, total=len(pending_rows), desc="encode corpus (Ray)", show=o.show_progress_bar)
    for b in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        for key, v in b.items():
            buf.setdefault(key, []).append(v)
        held += len(b["row"])
        if bar is not None:
            bar.update(len(b["row"]))
        # rows arrive in corpus order (preserve_order): a shard is complete once its last row is in
        while queue and held >= _shard_len(queue[0], shard_size, len(rows)):
            s = queue.pop(0)
            lo, n = s * shard_size, _shard_len(s, shard_size, len(rows))
            got = {key: np.concatenate(v) for key, v in buf.items()}
            if not np.array_equal(got["row"][:n], np.arange(lo, lo + n)):  # never write a mixed shard
                raise RuntimeError(f"shard {s}: rows arrived out of order; nothing of it was written")
            _write_shard(job.work / _shard_name(s), {key: v[:n] for key, v in got.items()}, rows, lo, anchors,
                         job.run_id, s)
            buf, held = {key: [v[n:]] for key, v in got.items()}, held - n
    if bar is not None:
        bar.close()
    if queue:
        raise RuntimeError(f"the encoded stream ended before shard {queue[0]} was complete")
    return n_shards


def _finish(job: _Job, rows: List[Dict], skipped: List[Dict], anchors: Contents, n_shards: int, clock: Clock) -> None:
    """The top-level manifest, then the work folder renamed into place (over an old collection there)."""
    work, out, shard_size, style = job.work, job.out, job.shard_size, anchors.style
    shards_meta = []
    for s in range(n_shards):
        folder = work / _shard_name(s)
        m = read_manifest(folder)
        shards_meta.append({"name": folder.name, "items": m["counts"]["items"], "texts": m["counts"]["texts"],
                            "first_id": s * shard_size, "last_id": min(len(rows), (s + 1) * shard_size) - 1,
                            "manifest_sha256": sha256_file(str(folder / "manifest.json"))})
    anchor_set = anchors.anchor_set
    manifest = {"format": SHARDED_FORMAT, "format_version": SHARDED_VERSION, "created": _now(), "run": job.run_id,
                "items": {"modality": job.modality}, "encoders": anchors.encoders, "projectors": job.projector,
                "anchors": {"source": anchor_set.source, "content_hash": anchor_set.content_hash,
                            "count": len(anchor_set), **({"views": anchors.anchor_views} if style is not None else {})},
                **({"style": dict(style.meta(), modality=job.modality)} if style is not None else {}),
                "corpus": {"source": str(job.corpus)}, "shard_size": int(shard_size), "shards": shards_meta,
                "counts": {"items": len(rows), "shards": n_shards, "skipped": len(skipped)},
                "skipped": skipped[:100], "timings": dict(clock.laps)}
    write_manifest(work / "manifest.json", manifest)
    job.run_file.unlink()
    (work / "checked.json").unlink()
    if out.exists():
        check_output(out, overwrite=True)  # again: files may have been put there while the shards were encoded
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)


def _write_shard(folder: Path, got: Dict[str, np.ndarray], rows: List[Dict], lo: int, anchors: Contents,
                 run_id: str, number: int) -> None:
    """One shard: its rows' encoded vectors and relative vectors (made on the workers), with the
    anchors and settings every shard shares (``anchors``)."""
    n_anchors = len(anchors.anchor_set)
    shard_rows = rows[lo:lo + len(got["row"])]
    has = got["has_caption"].astype(bool)
    rel = (_csr(got["rel_idx"], got["rel_val"], n_anchors), _csr(got["cap_idx"][has], got["cap_val"][has], n_anchors))
    write_collection(folder, dataclasses.replace(
        anchors, rows=shard_rows, item_vecs=got["vec"], captioned=np.flatnonzero(has).tolist(),
        cap_vecs=got["cap"][has], ids=np.arange(lo, lo + len(shard_rows)), rel=rel,
        extra={"shard": {"run": run_id, "number": number}}))
    log.info("wrote %s (%d items)", folder.name, len(shard_rows))


def _pool(ray, workers: Optional[int]):
    """A fixed pool of actors: ``workers``, or one per GPU of the cluster, else one per CPU."""
    if workers is not None:
        if workers < 1:
            raise InputError(f"expected workers >= 1, got {workers}")
        size = int(workers)
    else:
        res = ray.cluster_resources()
        size = max(1, int(res.get("GPU", 0)) or int(res.get("CPU", 1)))
    return ray.data.ActorPoolStrategy(size=size)


def _resources(ray) -> Dict:
    """A GPU per encoding actor when the cluster has GPUs; one CPU otherwise."""
    return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}


def _now() -> str:
    return now_iso()
