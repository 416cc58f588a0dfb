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

**Search** (:class:`ShardedCollection`). A query is encoded once, searched in every shard (in this
process, or in Ray actors that each hold shards in memory) and the shards' top lists are merged by
the same ranking rule a single collection uses (score within TIE_EPS, then the dense relative
cosine, then the id), so the answer equals that of one collection of the same items.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from retrieval.errors import CollectionFormatError, InputError, UnsupportedQueryError

log = logging.getLogger(__name__)

SHARDED_FORMAT = "retrieval-sharded-collection"
# 2: the manifest checksums its own content (manifest_sha256); 1 is still read.
SHARDED_VERSION = 2
DEFAULT_SHARD_SIZE = 100_000
RUN_FILE = "run.json"


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise InputError("the distributed build and Ray-held shards need Ray; pip install 'retrieval[ray]' "
                         "(or leave out --ray to build in this process)") from exc
    return ray


def connect(address: Optional[str] = None, **init_kwargs):
    """Join the Ray cluster at ``address`` (``"auto"``: the one this machine belongs to), or start a
    local one (``None``), unless this process is already connected. Ray's usage statistics, which
    it would otherwise try to send over the internet, are off unless the environment says so."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = _ray()
    if not ray.is_initialized():
        try:
            if address in (None, "", "local"):
                init_kwargs.setdefault("include_dashboard", False)
                ray.init(**init_kwargs)
            else:
                ray.init(address=address, **init_kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = "a local Ray cluster" if address in (None, "", "local") else f"the Ray cluster at {address!r}"
            raise InputError(f"expected to reach {where}, but Ray said: {str(exc).splitlines()[0] if str(exc) else exc!r}; "
                             f"start one with 'ray start --head' (then --ray auto), or give --ray no address for "
                             f"a local cluster") from exc
    return ray


# ---- the workers' side ---------------------------------------------------------------------------

class _Check:
    """Ray actor body: which corpus rows decode (the build's readability check, on the workers)."""

    def __init__(self, modality: str, setup: Optional[Callable] = None):
        if setup is not None:
            setup()
        self.modality = modality

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from retrieval.build.builder import readable_media

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

        from retrieval.encoders import load_encoder
        from retrieval.core.relative import RelativeProjector

        if isinstance(anchors, ray.ObjectRef):  # put in the object store once by the driver; fetched once here
            anchors = ray.get(anchors)
        self.modality, self.batch_size, self.k = modality, batch_size, int(projector["k"])
        self.encoders = {m: load_encoder(specs[m], m, device=device) for m in (modality, "text")}
        style = anchors.get("style")  # the driver's style normaliser (views), applied to the items' modality
        self.projectors = {m: RelativeProjector(**projector, style=style if m == modality else None).fit(anchors[m])
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
    from retrieval.store.format import read_manifest

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


def build_sharded(corpus, anchors, out, *, address: Optional[str] = None, shard_size: int = DEFAULT_SHARD_SIZE,
                  workers: Optional[int] = None, image_encoder: Optional[str] = None,
                  text_encoder: Optional[str] = None, audio_encoder: Optional[str] = None, k: Optional[int] = None,
                  p: Optional[float] = None, center: Optional[bool] = None, index: str = "exact",
                  overwrite: bool = False, restart: bool = False, cache_dir: Optional[str] = None,
                  batch_size: int = 32, device: str = "cpu", show_progress_bar: Optional[bool] = None,
                  worker_setup: Optional[Callable] = None, ray_init: Optional[Dict] = None) -> Path:
    """Build a sharded collection on Ray; returns its folder (see the module docstring).

    ``address``: a Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``) or None for a
    local one. ``workers``: encoding actors (default: one per CPU of the cluster, or per GPU when
    it has GPUs). ``worker_setup``: a function each worker runs once before loading encoders, e.g.
    to register a custom encoder backend. ``restart`` discards a partial build of other settings.

    >>> build_sharded("corpus/", "anchors.parquet", "indexes/big", address="auto")  # doctest: +SKIP
    """
    from retrieval.build.anchors import AnchorSet, load_anchor_set
    from retrieval.build.builder import DEFAULT_CENTER, default_k_p, parse_index_spec
    from retrieval.encoders import DEFAULT_ENCODERS
    from retrieval.core.relative import RelativeProjector
    from retrieval.media.tables import rows_from

    from retrieval.store.format import check_output

    out = check_output(out, overwrite)
    work = out.parent / f"{out.name}.partial"
    if not isinstance(shard_size, (int, np.integer)) or shard_size < 1:
        raise InputError(f"expected a shard size >= 1, got {shard_size!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise InputError(f"expected workers >= 1 (encoding actors), got {workers!r}")
    index_spec = parse_index_spec(index)
    anchor_set = anchors if isinstance(anchors, AnchorSet) else load_anchor_set(anchors)
    modality = anchor_set.modality
    # views of one concept (a 'concept' column with repeats) become one anchor, as in a one-process build
    specs = {"image": image_encoder or DEFAULT_ENCODERS["image"], "text": text_encoder or DEFAULT_ENCODERS["text"],
             "audio": audio_encoder or DEFAULT_ENCODERS["audio"]}
    k, p = default_k_p(anchor_set, k, p, specs[modality])
    center = DEFAULT_CENTER if center is None else center
    projector = {"kind": "asif", "k": k, "p": p, "center": center}
    RelativeProjector(**projector).check_params(anchor_set.n_anchors)
    specs = {m: specs[m] for m in (modality, "text")}
    _, rows = rows_from(corpus, caption_required=False, what="corpus", modality=modality)

    settings = {"format": SHARDED_VERSION, "corpus": [(r["path"], r["caption"], r["label"]) for r in rows],
                "anchors": anchor_set.content_hash, "encoders": specs, "projector": projector, "index": index_spec,
                "shard_size": int(shard_size)}
    run_id = _digest(settings)
    ray = connect(address, **(ray_init or {}))  # before the work folder: a cluster not reached leaves nothing
    import ray.data  # noqa: F401  (Ray Data is part of the extra)

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
        if show_progress_bar is False:
            setattr(ctx, attr, False)
    try:
        return _run(ray, work, run_file, run_id, out, corpus, rows, anchor_set, modality, specs, projector,
                    index_spec, shard_size, workers, batch_size, device, cache_dir, show_progress_bar, worker_setup)
    except InputError:
        if fresh and not any(work.glob("shard-*")):  # nothing worth resuming: leave no litter
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:  # Ray's data context is process-wide: leave it as it was
        ctx.execution_options.preserve_order = saved[0]
        for attr, value in saved[1].items():
            setattr(ctx, attr, value)


def _run(ray, work, run_file, run_id, out, corpus, rows, anchor_set, modality, specs, projector, index_spec,
         shard_size, workers, batch_size, device, cache_dir, show_progress_bar, worker_setup) -> Path:
    """The build itself, once settings are checked and the work folder is claimed."""
    from retrieval.build.anchors import encode_anchors
    from retrieval.build.builder import _Clock, write_collection
    from retrieval.core.style import prepare_views
    from retrieval.encoders import load_encoder
    from retrieval.progress import progress

    clock = _Clock()

    # 1. which files decode: in parallel on the workers; decides the items' ids, as a one-process
    # build does. Kept in the work folder, so that a resumed build does not decode everything again.
    checked_file = work / "checked.json"
    if checked_file.is_file():
        reasons = json.loads(checked_file.read_text(encoding="utf-8"))
    else:
        checked = (ray.data.from_items([{"row": i, "path": r["path"]} for i, r in enumerate(rows)])
                   .map_batches(_Check, fn_constructor_kwargs={"modality": modality, "setup": worker_setup},
                                batch_size=max(1, batch_size), compute=_pool(ray, workers), batch_format="numpy"))
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
        raise InputError(f"expected at least one readable {modality} file in the corpus {str(corpus)!r}, "
                         f"all {len(skipped)} failed, e.g. {skipped[0]['reason'] if skipped else 'none listed'}")
    clock.lap("check_files")

    # 2. anchors on the driver (cached by content hash), then into the object store once
    enc_kw = dict(cache_dir=cache_dir, batch_size=batch_size, show_progress_bar=show_progress_bar)
    if worker_setup is not None:
        worker_setup()
    encoders = {m: load_encoder(specs[m], m, device=device) for m in (modality, "text")}
    a_med = encode_anchors(anchor_set, encoders[modality], modality, **enc_kw)
    a_txt = encode_anchors(anchor_set, encoders["text"], "text", **enc_kw)
    views = len(anchor_set)
    anchor_set, a_med, a_txt, style = prepare_views(anchor_set, a_med, a_txt)  # fitted once, here
    enc_meta = {m: {"spec": e.name, "dim": e.dim} for m, e in encoders.items()}
    del encoders
    anchors_ref = ray.put({modality: a_med, "text": a_txt, "style": style})
    clock.lap("encode_anchors")

    # 3. shards still to write; encode their rows through the actor pool, in corpus order
    n_shards = (len(rows) + shard_size - 1) // shard_size
    done = _finished_shards(work, run_id)
    todo = [s for s in range(n_shards) if s not in done]
    log.info("%d shard(s) of %d items: %d written before, %d to build", n_shards, shard_size, len(done), len(todo))
    pending_rows = [i for s in todo for i in range(s * shard_size, min(len(rows), (s + 1) * shard_size))]
    if pending_rows:
        ds = ray.data.from_items([{"row": i, "path": rows[i]["path"], "caption": rows[i]["caption"] or ""}
                                  for i in pending_rows])
        resources = _resources(ray)
        encoded = ds.map_batches(_Encode, fn_constructor_kwargs={
            "modality": modality, "specs": specs, "anchors": anchors_ref, "projector": projector,
            "batch_size": batch_size, "device": "cuda" if "num_gpus" in resources else device,
            "setup": worker_setup},
            batch_size=max(1, batch_size), compute=_pool(ray, workers), batch_format="numpy", **resources)
        buf: Dict[str, List[np.ndarray]] = {}
        held = 0  # rows in buf
        queue = list(todo)
        bar = progress(None, total=len(pending_rows), desc="encode corpus (Ray)", show=show_progress_bar)
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
                _write_shard(work / _shard_name(s), {key: v[:n] for key, v in got.items()}, rows, lo,
                             anchor_set, (a_med, a_txt), enc_meta, projector, index_spec, str(corpus), run_id, s,
                             write_collection, style, views)
                buf, held = {key: [v[n:]] for key, v in got.items()}, held - n
        if bar is not None:
            bar.close()
        if queue:
            raise RuntimeError(f"the encoded stream ended before shard {queue[0]} was complete")
    clock.lap("encode_corpus")

    # 4. the top-level manifest, then the folder into place
    shards_meta = []
    from retrieval.store.arrow import sha256_file
    from retrieval.store.format import read_manifest, write_manifest

    for s in range(n_shards):
        folder = work / _shard_name(s)
        m = read_manifest(folder)
        shards_meta.append({"name": folder.name, "items": m["counts"]["items"], "texts": m["counts"]["texts"],
                            "first_id": s * shard_size, "last_id": min(len(rows), (s + 1) * shard_size) - 1,
                            "manifest_sha256": sha256_file(str(folder / "manifest.json"))})
    manifest = {"format": SHARDED_FORMAT, "format_version": SHARDED_VERSION, "created": _now(), "run": run_id,
                "items": {"modality": modality}, "encoders": enc_meta, "projector": projector,
                "anchors": {"source": anchor_set.source, "content_hash": anchor_set.content_hash,
                            "count": len(anchor_set), **({"views": views} if style is not None else {})},
                **({"style": dict(style.meta(), modality=modality)} if style is not None else {}),
                "corpus": {"source": str(corpus)}, "shard_size": int(shard_size), "shards": shards_meta,
                "counts": {"items": len(rows), "shards": n_shards, "skipped": len(skipped)},
                "skipped": skipped[:100], "timings": dict(clock.laps)}
    write_manifest(work / "manifest.json", manifest)
    run_file.unlink()
    (work / "checked.json").unlink()
    if out.exists():
        old = out.parent / f".{out.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(work, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, out)
    return out


def _write_shard(folder: Path, got: Dict[str, np.ndarray], rows: List[Dict], lo: int, anchor_set, anchor_vecs,
                 enc_meta, projector, index_spec, corpus, run_id, number, write_collection, style=None,
                 views=None) -> None:
    n_anchors = len(anchor_set)
    shard_rows = rows[lo:lo + len(got["row"])]
    has = got["has_caption"].astype(bool)
    captioned = np.flatnonzero(has).tolist()
    write_collection(folder, rows=shard_rows, item_vecs=got["vec"], captioned=captioned, cap_vecs=got["cap"][has],
                     anchor_set=anchor_set, anchor_vecs=anchor_vecs, encoders=enc_meta, k=projector["k"],
                     p=projector["p"], kind="asif", center=projector["center"], index_spec=index_spec, corpus=corpus,
                     ids=np.arange(lo, lo + len(shard_rows)),
                     rel=(_csr(got["rel_idx"], got["rel_val"], n_anchors), _csr(got["cap_idx"][has], got["cap_val"][has],
                                                                               n_anchors)),
                     extra={"shard": {"run": run_id, "number": number}}, style=style, anchor_views=views)
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
    from retrieval.store.format import now_iso

    return now_iso()


# ---- searching shards as one ---------------------------------------------------------------------

def read_sharded_manifest(folder: Path) -> Dict:
    folder = Path(folder)
    try:
        m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CollectionFormatError(f"expected a readable manifest.json in {str(folder)!r}: {exc}") from exc
    if not isinstance(m, dict) or m.get("format") != SHARDED_FORMAT or m.get("format_version", 99) > SHARDED_VERSION:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise CollectionFormatError(f"expected a {SHARDED_FORMAT} version <= {SHARDED_VERSION} in {str(folder)!r}, "
                                    f"got {got!r} version {m.get('format_version') if isinstance(m, dict) else None!r}")
    from retrieval.store.arrow import sha256_file
    from retrieval.store.format import manifest_checksum

    if m["format_version"] >= 2 and m.get("manifest_sha256") != manifest_checksum(m):
        raise CollectionFormatError(f"expected the sharded manifest in {str(folder)!r} to match its own checksum "
                                    f"(manifest_sha256), it does not: it was edited or damaged; rebuild it")

    for s in m["shards"]:
        f = folder / s["name"] / "manifest.json"
        if os.path.basename(s["name"]) != s["name"] or not f.is_file():
            raise CollectionFormatError(f"expected shard {s['name']!r} inside {str(folder)!r}; it is missing")
        if sha256_file(str(f)) != s["manifest_sha256"]:
            raise CollectionFormatError(f"shard {s['name']!r}'s manifest does not match the sharded manifest: "
                                        f"the collection was modified; rebuild it")
    return m


def is_sharded(folder) -> bool:
    try:
        return json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8")).get("format") == SHARDED_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class _ShardHolder:
    """Ray actor body: one or more shards opened once and kept in memory."""

    def __init__(self, folders: Sequence[str], verify: bool = True):
        from retrieval.api.collection import Collection

        self.cols = [Collection.open(f, verify=verify) for f in folders]

    def search_vectors(self, q, k, modality, target, route):
        return [c.search_vectors(q, k=k, modality=modality, target=target, route=route) for c in self.cols]


class ShardedCollection:
    """Shards searched as one collection: the same search API as :class:`retrieval.Collection`
    (items as the target; texts live in every shard with the anchors', so text targets are refused).

    ``actors``: hold the shards in Ray actors (``address`` as for :func:`connect`), ``actors`` of
    them, instead of in this process.
    """

    def __init__(self, folder, manifest: Dict, *, device: str = "cpu", verify: bool = True,
                 actors: Optional[int] = None, address: Optional[str] = None):
        from retrieval.api.collection import Collection

        self.folder, self.sharded_manifest = Path(folder), manifest
        folders = [str(self.folder / s["name"]) for s in manifest["shards"]]
        # The first shard answers everything that is the same in every shard: plans, encoders,
        # classification (anchors only), explain.
        self.first = Collection.open(folders[0], device=device, verify=verify)
        self.modality = self.first.modality
        self.first_ids = np.array([s["first_id"] for s in manifest["shards"]], np.int64)
        self._holders, self._local, self._paths = None, None, {}
        if actors:
            ray = connect(address)
            groups = [folders[i::actors] for i in range(min(actors, len(folders)))]
            Holder = ray.remote(_ShardHolder)
            self._holders = [Holder.remote(g, verify) for g in groups]
            self._order = [i for g in range(len(groups)) for i in range(g, len(folders), actors)]
        else:
            self._local = [self.first] + [Collection.open(f, device=device, verify=verify) for f in folders[1:]]
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

    def encoder(self, modality: str):
        return self.first.encoder(modality)

    def plan(self, modality: str, target: Optional[str] = None, route: Optional[str] = None):
        return self.first.plan(modality, self._target(target), route)

    def classify(self, inputs, labels, **kwargs):
        """Classify files (the anchors are the same in every shard, so the first shard answers)."""
        if inputs is None:
            raise InputError("expected files to classify: a sharded collection's own items live in its shards; "
                             "classify a shard folder (NAME/shard-00000, ...) to label its items")
        return self.first.classify(inputs, labels, **kwargs)

    def _target(self, target: Optional[str]) -> str:
        target = target or "items"
        if target not in ("items", self.modality):
            raise UnsupportedQueryError(f"expected target 'items' ({self.modality}) for a sharded collection, got {target!r}: "
                             f"each shard holds the anchor captions too, so text results are searched per shard")
        return self.modality

    def search(self, query, *, k: int = 10, modality: Optional[str] = None, target: Optional[str] = None,
               route: Optional[str] = None):
        from retrieval.api.collection import _guess_modality

        return self.search_many([query], k=k, modality=modality or _guess_modality(query), target=target,
                                route=route)[0]

    def search_many(self, queries: Sequence, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                    route: Optional[str] = None, batch_size: int = 32, show_progress_bar: Optional[bool] = None):
        self.plan(modality, target, route)  # an impossible route fails before encoding
        q = self.encoder(modality).encode(list(queries), batch_size=batch_size, show_progress_bar=show_progress_bar)
        return self.search_vectors(q, k=k, modality=modality, target=target, route=route)

    def search_vectors(self, vectors, *, k: int = 10, modality: str = "text", target: Optional[str] = None,
                       route: Optional[str] = None):
        from dataclasses import replace

        from retrieval.core.ranking import rank_candidates

        target = self._target(target)
        chosen = self.plan(modality, target, route)
        if chosen.route == "fusion" or chosen.then == "fusion":
            raise UnsupportedQueryError("expected a route whose scores compare across shards (relative, translation, absolute, "
                             "pivot); fusion ranks by position in each list, which does not merge exactly")
        q = np.asarray(vectors, np.float32)
        if self._holders is not None:
            ray = connect()
            parts = [r for h in ray.get([h.search_vectors.remote(q, k, modality, target, route) for h in self._holders])
                     for r in h]
            parts = [parts[self._order.index(i)] for i in range(len(parts))]
        else:
            parts = [c.search_vectors(q, k=k, modality=modality, target=target, route=route) for c in self._local]
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
            import pyarrow.parquet as pq

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
            m = json.loads((self.folder / sh["name"] / "manifest.json").read_text(encoding="utf-8"))
            caps += m["counts"]["corpus_captions"]
            size += sum(f["bytes"] for f in m["files"].values())
        c = self.sharded_manifest["counts"]
        info.update(path=str(self.folder), bytes_on_disk=size, skipped=self.sharded_manifest.get("skipped", []),
                    counts={"items": c["items"], "texts": caps + self.first.manifest["counts"]["anchors"],
                            "corpus_captions": caps, "skipped": c["skipped"], "shards": c["shards"]},
                    shards={"count": c["shards"], "shard_size": self.sharded_manifest["shard_size"]})
        return info
