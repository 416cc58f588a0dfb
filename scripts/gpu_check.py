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
  on the CPU (agreement: the smallest cosine between the two embeddings of an image), when its
  package is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import best_of, recall_at  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--anchors", type=int, default=100_000)
    ap.add_argument("--vectors", type=int, default=4_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("-k", type=int, default=64)
    a = ap.parse_args(argv)

    import torch

    from retrieval.core.relative import RelativeProjector
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

    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"
    print(f"device: {dev}; anchors {a.anchors}, vectors {a.vectors}, items {a.items}, d {a.dim}, k {a.k}")
    print(f"{'path':<72} {'agreement':>9} {'max |diff|':>11} {'speed-up':>9}")
    for name, agree, err, ratio in rows:
        print(f"{name:<72} {agree:>9.4f} {err:>11.2e} {ratio:>8.1f}x")
    bad = [r for r in rows if r[1] == r[1] and r[1] < 0.99]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
