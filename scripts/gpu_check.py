"""Run the GPU paths against the CPU paths and print agreement and speed ratios (under 5 minutes).

For whoever has a GPU: needs torch with CUDA (and, for the FAISS rows, faiss-gpu); nothing else from
the network. Every GPU answer is compared with the CPU answer on the same data in the same run.

    python scripts/gpu_check.py                 # defaults sized for a minute or two on one GPU
    python scripts/gpu_check.py --device cpu    # self-test of this script on a machine without a GPU

Rows:
* relativisation: RelativeProjector(select="torch", device=GPU) vs select="heap" on the CPU;
* exact sparse search: TorchIndex(GPU) vs InvertedIndex (CPU) over ASIF relative vectors;
* dense search: FaissIndex(use_gpu=True) vs FaissIndex(use_gpu=False) when faiss sees a GPU;
* image encoders: the packaged EfficientNet-Lite0, single- and two-depth readouts, on the device vs
  on the CPU with its default runtime (agreement: the smallest cosine between the two embeddings of
  an image), when its package is installed;
* ONNX Runtime's CUDA provider (when the installed onnxruntime has it) vs its CPU provider, on the
  same exported EfficientNet-Lite0 graph the CPU runtime uses;
* the server's micro-batching on the device: 32 concurrent text searches of a small real collection
  built on the device, micro-batched vs one at a time (throughput ratio; agreement: the share of
  queries with the same top 10), when fastapi and the emoji data packages are installed.

    python scripts/gpu_check.py --out results/bench/gpu.md   # also writes the table as Markdown
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import best_of, recall_at, report


def ort_cuda_row(device: str):
    """ONNX Runtime's CUDA provider against its CPU provider on the exported EfficientNet-Lite0 graph."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers() or not device.startswith("cuda"):
        print(f"(ONNX Runtime CUDA row skipped: providers {ort.get_available_providers()})")
        return None
    from retrieval.encoders import load_encoder

    enc = load_encoder("efficientnet-lite0-multi", "image", runtime="onnx")
    x = np.random.default_rng(1).normal(size=(64, 3, enc.size, enc.size)).astype(np.float32)
    cpu = ort.InferenceSession(str(enc._onnx.path), providers=["CPUExecutionProvider"])
    gpu = ort.InferenceSession(str(enc._onnx.path), providers=["CUDAExecutionProvider"])
    gpu.run(None, {"pixels": x})
    t_cpu, a = best_of(lambda: cpu.run(None, {"pixels": x})[0])
    t_gpu, b = best_of(lambda: gpu.run(None, {"pixels": x})[0])
    cos = float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())
    return ("ONNX Runtime: CUDA provider vs CPU provider, Lite0 features (min cosine)", cos,
            float(np.abs(a - b).max()), t_cpu / t_gpu)


def server_row(device: str):
    """Micro-batched vs one-at-a-time text search through the HTTP app, collection and encoders on ``device``."""
    import tempfile
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient

    from retrieval import build_collection
    from retrieval.datasets import emoji
    from retrieval.serve.server import create_app

    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    paths = emoji.prepare(tmp / "data", limit=300, show_progress_bar=False)
    col = build_collection(paths["corpus"], paths["anchors"], tmp / "col", device=device, show_progress_bar=False)
    queries = [f"an emoji of {w}" for w in ("a red apple", "a dog", "a rocket", "a cat", "a tree", "rain", "a car",
                                            "a heart")] * 32
    results, rates = {}, {}
    for mode, wait in (("one", 0), ("batched", 5)):
        client = TestClient(create_app({"c": str(col)}, device=device, batching={"max_wait_ms": wait}))
        ask = lambda q: [h["id"] for h in client.post("/collections/c/search",  # noqa: E731
                                                      json={"query": q, "k": 10}).json()["results"]]
        ask(queries[0])
        t = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            results[mode] = list(pool.map(ask, queries))
        rates[mode] = len(queries) / (time.perf_counter() - t)
    same = float(np.mean([x == y for x, y in zip(results["one"], results["batched"])]))
    return ("server: 32 clients, micro-batched vs one at a time (same top 10)", same, float("nan"),
            rates["batched"] / rates["one"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--anchors", type=int, default=100_000)
    ap.add_argument("--vectors", type=int, default=4_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("-k", type=int, default=64)
    ap.add_argument("--out", default=None, help="also write the table as Markdown here")
    a = ap.parse_args(argv)

    import torch

    from retrieval.core.projector import RelativeProjector
    from retrieval.indexes import FaissIndex, TorchIndex
    from retrieval.indexes.inverted import InvertedIndex

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("torch sees no CUDA device; run with --device cpu to self-test the script", file=sys.stderr)
        return 2
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(a.anchors, a.dim)).astype(np.float32)
    x = rng.normal(size=(a.vectors, a.dim)).astype(np.float32)
    rows = []

    cpu = RelativeProjector(k=a.k, p=4.0, select="heap").fit(anchors)
    gpu = RelativeProjector(k=a.k, p=4.0, select="torch", device=a.device).fit(anchors)
    gpu.transform(x[:8])
    t_cpu, r_cpu = best_of(lambda: cpu.transform(x))
    t_gpu, r_gpu = best_of(lambda: (gpu.transform(x), sync())[0])
    agree = float(np.mean(r_cpu.indices == r_gpu.indices))
    err = float(np.abs(r_cpu.data - r_gpu.data).max()) if agree == 1.0 else float("nan")
    rows.append(("relativise: torch on device vs heap on CPU", agree, err, t_cpu / t_gpu))

    items = RelativeProjector(k=a.k, p=4.0, select="torch", device=a.device).fit(anchors).transform(
        rng.normal(size=(a.items, a.dim)).astype(np.float32))
    q = r_cpu[:1000]
    inv, tix = InvertedIndex("float32").add(items), TorchIndex(a.device).add(items)
    tix.search(q[:2], 10)
    t_cpu, h_cpu = best_of(lambda: inv.search(q, 10))
    t_gpu, h_gpu = best_of(lambda: (tix.search(q, 10), sync())[0])
    err = max(float(np.abs(c.scores - g.scores).max()) for c, g in zip(h_cpu, h_gpu))
    rows.append(("exact sparse top-10: TorchIndex on device vs inverted index on CPU",
                 recall_at([h.ids for h in h_cpu], [h.ids for h in h_gpu]), err, t_cpu / t_gpu))

    try:
        import faiss
        n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except ImportError:
        n_gpus = None
    if n_gpus:
        dense = rng.normal(size=(a.items, a.dim)).astype(np.float32)
        qd = dense[:1000] + 0.1
        fc, fg = FaissIndex(use_gpu=False).add(dense), FaissIndex(use_gpu=True).add(dense)
        t_cpu, h_cpu = best_of(lambda: fc.search(qd, 10))
        t_gpu, h_gpu = best_of(lambda: fg.search(qd, 10))
        err = max(float(np.abs(c.scores - g.scores).max()) for c, g in zip(h_cpu, h_gpu))
        rows.append(("dense Flat top-10: faiss GPU vs faiss CPU", recall_at([h.ids for h in h_cpu], [h.ids for h in h_gpu]),
                     err, t_cpu / t_gpu))
    else:
        rows.append(("dense Flat top-10: faiss GPU vs CPU", float("nan"), float("nan"), float("nan")))
        print(f"(faiss {'is not installed' if n_gpus is None else 'sees no GPU'}: its row is skipped)")

    try:
        from PIL import Image

        from retrieval.encoders import load_encoder

        imgs = [Image.new("RGB", (90, 70), c) for c in ("red", "teal", "black")]
        imgs += [Image.effect_noise((96, 96), 60 + 10 * i).convert("RGB") for i in range(61)]
        for spec in ("efficientnet-lite0", "efficientnet-lite0-multi"):  # the old and the current default
            enc_cpu, enc_dev = (load_encoder(spec, "image", device=d) for d in ("cpu", a.device))
            t_cpu, e_cpu = best_of(lambda: enc_cpu.encode(imgs))
            t_gpu, e_gpu = best_of(lambda: enc_dev.encode(imgs))
            rows.append((f"image encoder: {spec} on device vs CPU (min cosine)",
                         float((e_cpu * e_gpu).sum(1).min()), float(np.abs(e_cpu - e_gpu).max()), t_cpu / t_gpu))
    except Exception as exc:  # noqa: BLE001 - the packaged model is optional here
        print(f"(image encoder row skipped: {exc})")

    for name, check in (("ONNX Runtime CUDA", ort_cuda_row), ("server", server_row)):
        try:
            row = check(a.device)
            if row:
                rows.append(row)
        except ImportError as exc:  # onnxruntime, fastapi or the emoji data may be missing on a lent machine
            print(f"({name} row skipped: {exc})")

    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"
    head = f"device: {dev}; anchors {a.anchors}, vectors {a.vectors}, items {a.items}, d {a.dim}, k {a.k}"
    print(head)
    print(f"{'path':<72} {'agreement':>9} {'max |diff|':>11} {'speed-up':>9}")
    for name, agree, err, ratio in rows:
        print(f"{name:<72} {agree:>9.4f} {err:>11.2e} {ratio:>8.1f}x")
    if a.out:
        cmd = f"python scripts/gpu_check.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip()
        report([f"Command: `{cmd}`", "", head, "", "| path | agreement | max abs diff | speed-up |", "|---|---|---|---|",
                *(f"| {n} | {g:.4f} | {e:.2e} | {r:.1f}x |" for n, g, e, r in rows)], a.out,
               {"device": dev, "rows": [dict(zip(("path", "agreement", "max_abs_diff", "speedup"), r)) for r in rows]})
    bad = [r for r in rows if r[1] == r[1] and r[1] < 0.99]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
