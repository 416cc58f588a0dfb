"""A collection of N items made from a real collection's vectors, to measure serving where the index,
not the encoder, dominates (`scripts/load_wrk.py` then serves it).

Items: each a random mixture of two real items' image vectors, ``unit(a v_i + (1 - a) v_j + noise)``
with ``a`` uniform in [0.5, 1] and Gaussian noise of norm about 0.1 (in the units of a unit vector), so
that the new items spread around the real ones instead of repeating them. Anchors: the source
collection's own anchor pairs, their stored image vectors and captions. The build is the product's:
`retrieval build` with the image side as `vectors:NAME` (no image model; text queries still through
the source's text encoder), the inverted index, no background bank. No captions in the corpus.

    python scripts/scale_collection.py indexes/emoji-demo --items 1000000 --out indexes/scale-1m
    python scripts/scale_collection.py indexes/emoji-demo --out indexes/scale-1m-k64 --build-args '-k 64'

Writes its inputs under OUT.inputs/ (kept: they are the record of what was built) and the collection
to OUT, refusing to replace either without ``--overwrite``; prints the build's wall time and the peak
resident memory of the build process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mixtures(real: np.ndarray, n: int, rng, out: np.ndarray, chunk: int = 50_000, noise: float = 0.1) -> None:
    """Fill ``out`` (n, d) with unit mixtures of pairs of rows of ``real``, chunk by chunk."""
    d = real.shape[1]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        i, j = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        a = rng.uniform(0.5, 1.0, (m, 1)).astype(np.float32)
        eps = rng.standard_normal((m, d)).astype(np.float32) * np.float32(noise / np.sqrt(d))
        out[start:start + m] = unit(a * real[i] + (1 - a) * real[j] + eps)


def write_inputs(source: Path, n: int, folder: Path, seed: int) -> tuple:
    """(corpus table, anchor table) made from ``source``'s stored vectors."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from retrieval.store.arrow import dense_column

    real = np.load(source / "image_vectors.npy", mmap_mode="r").astype(np.float32)
    items = pq.read_table(source / "items.parquet", columns=["label"]).column("label").to_pylist()
    rng = np.random.default_rng(seed)
    corpus = folder / "items.csv"
    vecs = np.lib.format.open_memmap(folder / "items.embedding.npy", mode="w+", dtype=np.float32, shape=(n, real.shape[1]))
    mixtures(real, n, rng, vecs)
    vecs.flush()
    del vecs
    # which real item a row leans on, and its label: filterable columns (and no row of the CSV is blank)
    first = rng.integers(0, len(items), n)
    pcsv.write_csv(pa.table({"source_item": first, "label": [items[i] or "none" for i in first]}), corpus)
    anchors = pq.read_table(source / "anchors.parquet", columns=["caption", "image_vector"])
    table = pa.table({"caption": anchors.column("caption"),
                      "image_embedding": dense_column(np.asarray(anchors.column("image_vector").to_pylist(), np.float32))})
    pairs = folder / "pairs.parquet"
    pq.write_table(table, pairs)
    return corpus, pairs


def check_source(source: Path) -> dict:
    """``source``'s manifest, once it is known to hold what this script reads; else an InputError."""
    from retrieval.errors import InputError

    need = ["manifest.json", "image_vectors.npy", "items.parquet", "anchors.parquet"]
    missing = [f for f in need if not (source / f).is_file()]
    if missing:
        raise InputError(f"expected a built collection with an image side in {str(source)!r} (files {need}), "
                         f"got none of {missing}")
    return json.loads((source / "manifest.json").read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="a built collection with an image side (its vectors and anchors are used)")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--overwrite", action="store_true", help="replace --out (and its inputs) if they exist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-args", default="", help="more arguments for retrieval build, one string (e.g. '-k 64')")
    a = ap.parse_args(argv)
    source, out = Path(a.source), Path(a.out)
    inputs = Path(str(out) + ".inputs")
    from retrieval.errors import InputError

    try:
        if a.items < 1:
            raise InputError(f"expected --items to be at least 1, got {a.items}")
        if (out.exists() or inputs.exists()) and not a.overwrite:
            raise InputError(f"expected {str(out)!r} and {str(inputs)!r} not to exist, got one of them; "
                             f"pass --overwrite to replace them")
        manifest = check_source(source)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    # made beside their place and renamed into it: a run cut short leaves no half-written inputs
    inputs.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".scale-inputs-", dir=inputs.parent))
    try:
        write_inputs(source, a.items, scratch, a.seed)
        shutil.rmtree(inputs, ignore_errors=True)
        os.replace(scratch, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    corpus, pairs = inputs / "items.csv", inputs / "pairs.parquet"
    made = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "retrieval", "build", "--corpus", str(corpus), "--anchors", str(pairs),
           "--image-encoder", f"vectors:{manifest['encoders']['image']['spec']}-mixtures",
           "--text-encoder", manifest["encoders"]["text"]["spec"], "--background", "none", "--index", "inverted",
           "--out", str(out), *(["--overwrite"] if a.overwrite else []), *a.build_args.split()]
    t1 = time.perf_counter()
    done = subprocess.run(cmd)
    if done.returncode != 0:
        return done.returncode
    built = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    print(f"{a.items:,} items: inputs {made:.0f} s, build {built:.0f} s, peak resident memory of the build "
          f"{peak:.1f} GiB\ncommand: {' '.join(cmd)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
