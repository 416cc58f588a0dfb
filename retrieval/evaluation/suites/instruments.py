"""instruments: text <-> audio over General MIDI's named sounds (128 instruments, 47 percussion
sounds), rendered offline from Debian's Fluid R3 soundfont: a second domain of named sounds beside
the sounds suite's sound effects, scored the same way (:func:`retrieval.evaluation.suites.sounds.text_audio`)."""

from __future__ import annotations

from typing import Dict

import numpy as np

from retrieval.evaluation.harness import Suite
from retrieval.evaluation.report import Report
from retrieval.evaluation.suites.sounds import SOUND_CAPTION, SPLITS, route_table, text_audio


def instruments(report: Report, snd, soundfont: str) -> Dict:
    from retrieval.evaluation.report import deb_version

    n = len(snd.names)
    cats = {c: int(np.sum(snd.categories == c)) for c in ("instrument", "sound effect", "percussion")}
    report.text(f"""
Data: the {n} sounds that General MIDI names ({cats['instrument']} instruments, {cats['sound effect']} sound
effects such as "Helicopter" and "Applause", {cats['percussion']} percussion sounds such as "Cowbell"),
each played through `{soundfont}` (Debian `fluid-soundfont-gm` {deb_version("fluid-soundfont-gm")}) by
`fluidsynth` ({deb_version("fluidsynth")}) into a clip: an
instrument plays C4 E4 G4 C5, half a second each; a sound effect holds one note 2.5 s; a drum is hit
four times (`retrieval/datasets/instruments.py`). Captions are "{snd.caption_template}" with the
standard's own name ("Acoustic Guitar (nylon)" -> "acoustic guitar nylon"); numbered variants share
their words ("Electric Piano 1" and "2") and are not counted against each other. Nothing here was
chosen on this suite: the ASIF rows use the engine default, CSA and NNN are chosen on validation folds
of each test half's anchors, and the planner's routes pool this suite with the sounds suite. Each of
{SPLITS} random two-fold splits cuts the sounds in halves of about {n // 2}; with {n} queries a recall near 0.5 has a standard error of about
{np.sqrt(0.25 / n):.3f}.""")
    out = route_table(report, "sounds", text_audio(report, snd, salt="instruments:"))
    report.data("summary.json", out)
    return out


def run(report: Report, ctx) -> Dict:
    from retrieval.datasets.instruments import FLUID_R3, render
    from retrieval.evaluation.data import data_dir, load_sounds

    found = render(data_dir("general-midi"), FLUID_R3, show_progress_bar=ctx.show_progress_bar)
    snd = load_sounds(ctx.audio, ctx.text, SOUND_CAPTION, ctx.show_progress_bar, sounds=found,
                      source="general-midi")
    return instruments(report, snd, FLUID_R3.name)


SUITE = Suite("instruments", "text<->audio retrieval over the sounds that General MIDI names (instruments, sound "
              "effects, percussion), rendered offline from Debian's Fluid R3 soundfont", run, audio=True)
