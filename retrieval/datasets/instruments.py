"""General MIDI sounds, rendered offline: a second, independent domain of named sounds.

The General MIDI standard names 128 instruments ("Church Organ", "Tubular Bells", "Helicopter") and
47 percussion sounds ("Cowbell", "Open Triangle"). Debian's ``fluid-soundfont-gm`` holds recorded
samples for every one of them (Fluid R3, 148 MB) and ``fluidsynth`` plays a MIDI file through it into
a sound file, so each name becomes a clip with no download: instruments play a C-major arpeggio
(C4 E4 G4 C5, half a second each; an instrument whose samples stop below C4, as Fluid R3's Contrabass
does, an octave lower, or two), the sound effects (programs 120-127) one note held 2.5 s, and each
drum four hits. The names are the standard's, not this project's, and so are the captions' words
("Acoustic Guitar (nylon)" -> "acoustic guitar nylon"); numbered variants share their words ("Electric
Piano 1" and "2" -> "electric piano") and are scored as twins, like the Debian sounds' ``Dog1``/``Dog2``.

Rendering runs once into a folder named by the soundfont's size and the clip recipe's version, written
whole to a temporary folder and renamed into place, so a run that dies leaves nothing half-rendered.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from retrieval.datasets.sounds import Sound
from retrieval.errors import InputError

FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
RECIPE = 1  # bump when the clips change (notes, lengths, format): the cache folder is named by it

PROGRAMS = (
    "Acoustic Grand Piano|Bright Acoustic Piano|Electric Grand Piano|Honky-tonk Piano|Electric Piano 1|"
    "Electric Piano 2|Harpsichord|Clavinet|Celesta|Glockenspiel|Music Box|Vibraphone|Marimba|Xylophone|"
    "Tubular Bells|Dulcimer|Drawbar Organ|Percussive Organ|Rock Organ|Church Organ|Reed Organ|Accordion|"
    "Harmonica|Tango Accordion|Acoustic Guitar (nylon)|Acoustic Guitar (steel)|Electric Guitar (jazz)|"
    "Electric Guitar (clean)|Electric Guitar (muted)|Overdriven Guitar|Distortion Guitar|Guitar Harmonics|"
    "Acoustic Bass|Electric Bass (finger)|Electric Bass (pick)|Fretless Bass|Slap Bass 1|Slap Bass 2|"
    "Synth Bass 1|Synth Bass 2|Violin|Viola|Cello|Contrabass|Tremolo Strings|Pizzicato Strings|"
    "Orchestral Harp|Timpani|String Ensemble 1|String Ensemble 2|Synth Strings 1|Synth Strings 2|"
    "Choir Aahs|Voice Oohs|Synth Choir|Orchestra Hit|Trumpet|Trombone|Tuba|Muted Trumpet|French Horn|"
    "Brass Section|Synth Brass 1|Synth Brass 2|Soprano Sax|Alto Sax|Tenor Sax|Baritone Sax|Oboe|"
    "English Horn|Bassoon|Clarinet|Piccolo|Flute|Recorder|Pan Flute|Blown Bottle|Shakuhachi|Whistle|"
    "Ocarina|Lead 1 (square)|Lead 2 (sawtooth)|Lead 3 (calliope)|Lead 4 (chiff)|Lead 5 (charang)|"
    "Lead 6 (voice)|Lead 7 (fifths)|Lead 8 (bass and lead)|Pad 1 (new age)|Pad 2 (warm)|Pad 3 (polysynth)|"
    "Pad 4 (choir)|Pad 5 (bowed)|Pad 6 (metallic)|Pad 7 (halo)|Pad 8 (sweep)|FX 1 (rain)|"
    "FX 2 (soundtrack)|FX 3 (crystal)|FX 4 (atmosphere)|FX 5 (brightness)|FX 6 (goblins)|FX 7 (echoes)|"
    "FX 8 (sci-fi)|Sitar|Banjo|Shamisen|Koto|Kalimba|Bagpipe|Fiddle|Shanai|Tinkle Bell|Agogo|Steel Drums|"
    "Woodblock|Taiko Drum|Melodic Tom|Synth Drum|Reverse Cymbal|Guitar Fret Noise|Breath Noise|Seashore|"
    "Bird Tweet|Telephone Ring|Helicopter|Applause|Gunshot"
).split("|")
FIRST_DRUM = 35  # General MIDI percussion: keys 35 .. 81 on channel 10
DRUMS = (
    "Acoustic Bass Drum|Bass Drum 1|Side Stick|Acoustic Snare|Hand Clap|Electric Snare|Low Floor Tom|"
    "Closed Hi-Hat|High Floor Tom|Pedal Hi-Hat|Low Tom|Open Hi-Hat|Low-Mid Tom|Hi-Mid Tom|Crash Cymbal 1|"
    "High Tom|Ride Cymbal 1|Chinese Cymbal|Ride Bell|Tambourine|Splash Cymbal|Cowbell|Crash Cymbal 2|"
    "Vibraslap|Ride Cymbal 2|Hi Bongo|Low Bongo|Mute Hi Conga|Open Hi Conga|Low Conga|High Timbale|"
    "Low Timbale|High Agogo|Low Agogo|Cabasa|Maracas|Short Whistle|Long Whistle|Short Guiro|Long Guiro|"
    "Claves|Hi Wood Block|Low Wood Block|Mute Cuica|Open Cuica|Mute Triangle|Open Triangle"
).split("|")
SOUND_EFFECTS = range(120, 128)  # "Guitar Fret Noise" .. "Gunshot": a held note, not an arpeggio
TICKS = 480                      # per beat; at the default 120 beats a minute, half a second


def words_of(name: str) -> str:
    """'Acoustic Guitar (nylon)' -> 'acoustic guitar nylon'; 'Slap Bass 1' -> 'slap bass';
    'Low-Mid Tom' -> 'low mid tom'."""
    return " ".join(re.sub(r"[^a-z]+", " ", re.sub(r"\d+", " ", name.lower())).split())


def _varlen(n: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits a byte, most significant first, high bit = more."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_file(events: Sequence[Tuple[int, bytes]]) -> bytes:
    """A one-track Standard MIDI File (format 0) from (absolute tick, message) pairs."""
    track, last = b"", 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        track += _varlen(tick - last) + message
        last = tick
    track += _varlen(0) + b"\xff\x2f\x00"  # end of track
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS) + b"MTrk" + struct.pack(">I", len(track)) + track


def program_clip(program: int, octave: int = 0) -> bytes:
    """The MIDI for one instrument: a C-major arpeggio from C4 (moved by ``octave`` octaves), or one
    held note for a sound effect."""
    if not 0 <= program < len(PROGRAMS):
        raise InputError(f"expected a General MIDI program 0..{len(PROGRAMS) - 1}, got {program}")
    events = [(0, bytes([0xC0, program]))]
    if program in SOUND_EFFECTS:
        return midi_file(events + [(0, bytes([0x90, 60, 100])), (5 * TICKS, bytes([0x80, 60, 0]))])
    for i, note in enumerate(n + 12 * octave for n in (60, 64, 67, 72)):
        events += [(i * TICKS, bytes([0x90, note, 100])), (i * TICKS + 440, bytes([0x80, note, 0]))]
    return midi_file(events)


def lower_clips(stem: str) -> List[bytes]:
    """An instrument's arpeggio an octave lower, then two: what is played when a soundfont's samples
    for it stop below C4 (Fluid R3's Contrabass is silent from about B3 up). Nothing for a drum or a
    sound effect."""
    if not stem.startswith("program") or int(stem[len("program"):]) in SOUND_EFFECTS:
        return []
    return [program_clip(int(stem[len("program"):]), octave) for octave in (-1, -2)]


def drum_clip(key: int) -> bytes:
    """The MIDI for one percussion sound: four hits half a second apart on channel 10."""
    if not FIRST_DRUM <= key < FIRST_DRUM + len(DRUMS):
        raise InputError(f"expected a General MIDI percussion key {FIRST_DRUM}..{FIRST_DRUM + len(DRUMS) - 1}, "
                         f"got {key}")
    events = []
    for i in range(4):
        events += [(i * TICKS, bytes([0x99, key, 110])), (i * TICKS + 400, bytes([0x89, key, 0]))]
    return midi_file(events)


def clips() -> List[Tuple[str, str, str, bytes]]:
    """(file stem, General MIDI name, category, MIDI bytes) for every named sound, in the standard's order."""
    out = [(f"program{i:03d}", name, "sound effect" if i in SOUND_EFFECTS else "instrument", program_clip(i))
           for i, name in enumerate(PROGRAMS)]
    out += [(f"drum{FIRST_DRUM + i:03d}", name, "percussion", drum_clip(FIRST_DRUM + i))
            for i, name in enumerate(DRUMS)]
    return out


def _fluidsynth() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise InputError("rendering the General MIDI sounds needs the fluidsynth program, which is not on PATH; "
                         "apt-get install fluidsynth fluid-soundfont-gm")
    return exe


def _silent(path: Path) -> bool:
    import soundfile

    audio, _ = soundfile.read(str(path), dtype="int16")
    return not audio.size or int(abs(audio).max()) == 0


def _render_one(exe: str, soundfont: Path, folder: Path, stem: str, data: bytes) -> bool:
    """``data`` (MIDI) played into ``folder/stem.flac``; False when the clip came out silent."""
    mid, flac = folder / f"{stem}.mid", folder / f"{stem}.flac"
    mid.write_bytes(data)
    done = subprocess.run([exe, "-ni", "-q", "-r", "44100", "-T", "flac", "-F", str(flac), str(soundfont), str(mid)],
                          capture_output=True, text=True)
    mid.unlink()
    if done.returncode != 0 or "error" in done.stderr.lower() or not flac.is_file():
        raise InputError(f"fluidsynth could not render {stem} through {soundfont} (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout).strip()[-400:] or 'no output'}")
    return not _silent(flac)


def render(folder, soundfont=FLUID_R3, show_progress_bar: Optional[bool] = None) -> List[Sound]:
    """Every General MIDI sound rendered through ``soundfont`` into a FLAC file under ``folder`` (once:
    a later call finds them), as :class:`~retrieval.datasets.sounds.Sound` records."""
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise InputError(f"expected a SoundFont file at {soundfont}, which does not exist; for the General MIDI "
                         "suite apt-get install fluid-soundfont-gm (Fluid R3, the soundfont its figures used)")
    with open(soundfont, "rb") as f:
        head = f.read(12)
    # fluidsynth, given a file it cannot read, renders through its own default soundfont and exits 0
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise InputError(f"expected a SoundFont 2 file (RIFF 'sfbk') at {soundfont}, got one starting {head!r}")
    tag = hashlib.sha256(f"{soundfont.resolve()}:{soundfont.stat().st_size}:{RECIPE}".encode()).hexdigest()[:12]
    final = Path(folder) / f"{soundfont.stem}-{tag}"
    items = clips()
    if not final.is_dir():
        exe = _fluidsynth()
        from retrieval.progress import progress

        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            for stem, _, _, data in progress(items, total=len(items), desc="render General MIDI sounds",
                                             show=show_progress_bar):
                lower = lower_clips(stem)
                while not _render_one(exe, soundfont, tmp, stem, data):
                    if not lower:
                        raise InputError(f"fluidsynth rendered {stem} through {soundfont} as silence, at every "
                                         f"pitch tried")
                    data = lower.pop(0)
            os.replace(tmp, final)  # whole or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return [Sound(str(final / f"{stem}.flac"), stem, words_of(name), "general-midi", category)
            for stem, name, category, _ in items]
