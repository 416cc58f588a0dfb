"""Where a packaged encoder's network runs: torch (eager), ONNX Runtime or OpenVINO.

Measured here (``scripts/bench_encoders.py``, results/bench/encoders.md, 2 cores): ONNX Runtime
runs the EfficientNet-Lite networks seven to ten times faster than torch eager (it fuses batch norms
into the convolutions; torch eager's depthwise convolutions are slow on a CPU), while on MiniLM it
gains little (both spend their time in the same matrix products). OpenVINO runs MiniLM about three
times faster than torch on a CPU with bfloat16 matrix units (AMX, AVX-512 BF16), where it computes
in bfloat16 by default: its embeddings still agree with torch's to a cosine above 0.9999 on text,
but not on images (0.995), so image networks run in float32 on it and gain nothing over ONNX
Runtime. The aiSFX sound network runs 3.2 x faster on OpenVINO (bfloat16, cosine 0.99996) and 1.6 x
on ONNX Runtime. Hence ``auto`` on a CPU: images on ONNX Runtime, text and sound on OpenVINO, each
falling back to the other, then to torch, by what is installed; torch stays for GPUs. Agreement with torch is
tested (tests/test_runtime.py), so the runtime is an execution setting like the device, not part
of an encoder's identity: a collection built on one runtime is searched on another.

Choosing: ``runtime=`` where an encoder is loaded, else ``$RETRIEVAL_RUNTIME``, else ``auto``; the CLI's
``--runtime`` sets the latter for its process. ``$RETRIEVAL_ENCODER_THREADS`` caps the threads ONNX Runtime
and OpenVINO run a network on (default: theirs, every core): a server sets it so that encoding leaves a
core to the requests and the search (``retrieval serve --encoder-threads``).

Exported models are cached (``$RETRIEVAL_CACHE/onnx``, like the anchor encodings) under a key made of
everything that decides the graph (:class:`Export`): the weights' content hash (of the files where
there are files, so that a cached export loads without torch: a server's start-up), the versions of
the packages whose code is traced, this module's export version and the torch version. A sidecar
JSON records the file's SHA-256, checked at every load (a corrupt, truncated or stale file is
exported again, never half-used), and the facts the encoder read off the network when it was
exported. ONNX files are protobuf graphs, not pickles: nothing in them runs as code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from retrieval.errors import InputError
from retrieval.store.arrow import sha256_file
from retrieval.store.cache import default_cache_dir

RUNTIMES = ("auto", "torch", "onnx", "openvino")
PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}  # onnx: the exporter writes it
EXPORT_VERSION = 2  # bump when an exported graph changes for the same weights
OPSET = 17
log = logging.getLogger("retrieval.encoders")


def requested_runtime(runtime: Optional[str] = None) -> str:
    r = runtime or os.environ.get("RETRIEVAL_RUNTIME") or "auto"
    if r not in RUNTIMES:
        where = "runtime" if runtime else "$RETRIEVAL_RUNTIME"
        raise InputError(f"expected {where} to be one of {', '.join(RUNTIMES)}, got {r!r}")
    return r


def missing_package(runtime: str) -> Optional[str]:
    """The first package ``runtime`` needs that is not installed (None: all are)."""
    import importlib.util

    for package in PACKAGES.get(runtime, ()):
        if importlib.util.find_spec(package) is None:
            return package
    return None


def choose_runtime(runtime: Optional[str], device: str, prefer: Tuple[str, ...] = ("onnx", "openvino")) -> str:
    """``torch``, ``onnx`` or ``openvino`` for an encoder on ``device``. ``auto``: on a CPU, the first
    of ``prefer`` (the encoder's measured order) that is installed, else torch; a runtime asked for
    where it cannot run is refused, naming what is missing."""
    r = requested_runtime(runtime)
    if r == "torch":
        return "torch"
    if r == "auto":
        return next((x for x in prefer if missing_package(x) is None), "torch") if device == "cpu" else "torch"
    missing = missing_package(r)
    if missing:
        raise InputError(f"the {r} runtime needs the PyPI package {missing}: pip install {' '.join(PACKAGES[r])} "
                         f"(or use --runtime torch)")
    if device != "cpu":
        raise InputError(f"the {r} runtime runs the packaged encoders on the CPU, got device {device!r}; "
                         f"use --runtime torch (or auto) on a GPU")
    return r


def weights_hash(module) -> str:
    """SHA-256 over a torch module's state (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        arr = t.detach().cpu().contiguous().numpy()
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def encoder_threads() -> Optional[int]:
    """``$RETRIEVAL_ENCODER_THREADS`` as a thread count, or None (the runtime's own default)."""
    raw = os.environ.get("RETRIEVAL_ENCODER_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(f"expected $RETRIEVAL_ENCODER_THREADS to be a whole number >= 1, got {raw!r}")
    return int(raw)


class OnnxModel:
    """An ONNX Runtime session on the CPU: ``run({input: array}) -> [outputs]``."""

    runtime = "onnx"

    def __init__(self, path: Path, threads: Optional[int] = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = threads or encoder_threads()
        if threads:
            opts.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self.session.run(None, feeds)


class OpenVinoModel:
    """The same exported graph compiled by OpenVINO for the CPU. ``precision=None`` keeps OpenVINO's
    default (bfloat16 where the CPU has bfloat16 units, else float32); ``"f32"`` forces float32.
    One infer request: callers run it one batch at a time (the server holds a lock around encoding).

    ``compiled_cache``: a folder where OpenVINO keeps what it compiled (its own cache: blobs keyed by
    the graph, the settings and OpenVINO's version), so that the next process compiles nothing:
    compiling was most of a server's encoder loading. If compiling through the cache fails (a damaged
    blob), the graph is compiled without it."""

    runtime = "openvino"

    def __init__(self, path: Path, precision: Optional[str] = None, compiled_cache: Optional[Path] = None):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
        threads = encoder_threads()
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path = Path(path)
        try:
            cached = dict(config, CACHE_DIR=str(compiled_cache)) if compiled_cache else config
            self.compiled = ov.Core().compile_model(str(path), "CPU", cached)
        except Exception as exc:
            if not compiled_cache:
                raise
            log.warning("OpenVINO's compiled cache in %s did not serve %s (%s); compiling without it",
                        compiled_cache, self.path.name, exc)
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.outputs = len(self.compiled.outputs)

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        res = self.request.infer(feeds)
        return [np.array(res[self.compiled.output(i)]) for i in range(self.outputs)]


def _valid(path: Path, meta: Path, key: str) -> Optional[Dict]:
    """The record of a cached export whose file is whole and of ``key``, else None."""
    try:
        want = json.loads(meta.read_text())
        ok = (want.get("key") == key and path.stat().st_size == want.get("bytes")
              and sha256_file(str(path)) == want.get("sha256"))
        return want if ok else None
    except (OSError, ValueError, AttributeError):
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def files_identity(paths: Sequence[str]) -> str:
    """SHA-256 over files' names and contents' hashes: what a network's files say of it, read without
    loading it."""
    parts = [f"{Path(p).name}|{sha256_file(str(p))}" for p in sorted(paths, key=lambda x: Path(x).name)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def package_versions(*names: str) -> Dict[str, Optional[str]]:
    """Installed versions, read from the packages' metadata (nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    def one(n):
        try:
            return version(n)
        except PackageNotFoundError:
            return None
    return {n: one(n) for n in names}


@dataclass
class Export:
    """A network to export: ``identity`` names everything that decides its graph (weights, readout,
    the versions of the code that traces it) and can often be read from files alone, so a cached
    export loads without torch; ``build()`` is called only when there is none, and gives
    ``(module, example inputs, input names, output names, dynamic axes, info)``. ``info``: facts read
    off the loaded network (its width, its inputs) that the encoder needs later: kept in the record."""

    name: str
    identity: Dict
    build: Callable[[], Tuple]


def _key(export: Export) -> str:
    return hashlib.sha256(json.dumps({
        "name": export.name, "identity": export.identity, "export": EXPORT_VERSION, "opset": OPSET,
        "torch": (package_versions("torch")["torch"] or "").split("+")[0]}, sort_keys=True).encode()).hexdigest()


def exported(export: Export, *, cache_dir: Optional[str] = None) -> Tuple[Path, Dict]:
    """(the ONNX file of ``export``, its info): exported once and cached by content; an invalid
    cached file is exported again."""
    key = _key(export)
    folder = Path(cache_dir or default_cache_dir()) / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in export.name)
    path, meta = folder / f"{stem}-{key[:16]}.onnx", folder / f"{stem}-{key[:16]}.json"
    record = _valid(path, meta, key)
    if record is not None:
        return path, record.get("info", {})
    if path.exists() or meta.exists():
        log.warning("the cached ONNX export %s does not match its record (corrupt or stale): exporting again", path)
    import torch

    module, example, inputs, outputs, dynamic_axes, info = export.build()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=".onnx.tmp")
    os.close(fd)
    try:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python values it takes as constants
            torch.onnx.export(module, example, tmp, input_names=list(inputs), output_names=list(outputs),
                              dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
        # the record is written last: a crash before it leaves a file that is exported again next time
        meta.unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    record = {"key": key, "sha256": sha256_file(str(path)), "bytes": path.stat().st_size, "encoder": export.name,
              "info": info}
    _write_atomically(meta, json.dumps(record, indent=1).encode())
    return path, info


def onnx_session(runtime: Optional[str], device: str, export: Export, *, prefer: Tuple[str, ...] = ("onnx", "openvino"),
                 openvino_precision: Optional[str] = None, cache_dir: Optional[str] = None):
    """The exported session an encoder runs on (``.run(feeds) -> outputs``, ``.info``), or None for
    torch. Under ``auto`` an export that fails falls back to torch with a warning; asked for
    explicitly, it is an error."""
    chosen = choose_runtime(runtime, device, prefer)
    if chosen == "torch":
        return None
    try:
        path, info = exported(export, cache_dir=cache_dir)
        compiled = Path(cache_dir or default_cache_dir()) / "openvino"  # OpenVINO's own blobs, beside the exports
        session = (OnnxModel(path) if chosen == "onnx"
                   else OpenVinoModel(path, openvino_precision, compiled_cache=compiled))
        session.info = info
        return session
    except InputError:
        raise
    except Exception as exc:
        if requested_runtime(runtime) != "auto":
            raise InputError(f"could not run {export.name!r} on {chosen} ({type(exc).__name__}: {exc}); "
                             f"use --runtime torch") from exc
        log.warning("%s stays on torch: it did not run on %s (%s: %s)", export.name, chosen, type(exc).__name__, exc)
        return None
