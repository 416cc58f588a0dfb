"""The evaluation suites, one module each, in a registry: ``retrieval eval --suite NAME`` writes
``results/NAME/README.md`` (and its JSON and plots). Each suite states its data, its splits (stable
hashes of names) and what was chosen on validation, never on the test queries."""

from __future__ import annotations

from typing import Optional

from retrieval.encoders import DEFAULT_ENCODERS, load_encoder
from retrieval.errors import UnknownNameError
from retrieval.evaluation.harness import Context, Suite
from retrieval.evaluation.report import Report
from retrieval.evaluation.suites import (
    anchors,
    captions,
    categories,
    crossdomain,
    digits,
    emoji_groups,
    emoji_xstyle,
    instruments,
    pictures,
    sounds,
)

SUITES = {s.name: s for s in (emoji_xstyle.SUITE, emoji_groups.SUITE, digits.SUITE, sounds.SUITE, instruments.SUITE,
                                pictures.SUITE, anchors.SUITE, captions.SUITE, categories.SUITE, crossdomain.SUITE)}


def run_suite(name: str, out: str = "results", *, show_progress_bar: Optional[bool] = None,
              command: Optional[str] = None):
    """Run one suite and write ``out/NAME/README.md`` and its plots; returns (folder, summary)."""
    suite = SUITES.get(name)
    if suite is None:
        raise UnknownNameError(f"unknown suite {name!r}; known: " + "; ".join(f"{s.name} ({s.summary})"
                                                                             for s in SUITES.values()))
    image = load_encoder(suite.image_encoder, "image")
    text = load_encoder(DEFAULT_ENCODERS["text"], "text")
    audio = load_encoder(DEFAULT_ENCODERS["audio"], "audio") if suite.audio else None
    encoders = {"image": image.name, "text": text.name, **({"audio": audio.name} if audio else {})}
    report = Report(name, f"Evaluation: {name}", command or f"retrieval eval --suite {name}", encoders)
    report.text(suite.summary[0].upper() + suite.summary[1:] + ".")
    # the runtime changes the encoders' arithmetic (OpenVINO computes in bfloat16) and so the figures a
    # little: the small sounds suite moved by 0.007-0.016 R@10 between runtimes (docs/research)
    runtimes = {m: getattr(e, "runtime", None) for m, e in (("image", image), ("text", text), ("audio", audio)) if e}
    if any(runtimes.values()):
        report.text("Encoder runtimes: " + ", ".join(f"{m} {r}" for m, r in runtimes.items() if r)
                    + " (`--runtime`, `$RETRIEVAL_RUNTIME`).")
    summary = suite.run(report, Context(image, text, audio, encoders, show_progress_bar))
    return report.write(out), summary


__all__ = ["SUITES", "Suite", "run_suite"]
