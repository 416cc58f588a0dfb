"""Named sound effects from Debian packages, as audio-text anchors and as a small corpus.

* ``scratch``: 114 sounds under ``/usr/share/scratch/Media/Sounds/<Category>/<Name>.{wav,mp3}``;
* ``sound-theme-freedesktop``: 35 desktop event sounds (``bell.oga``, ``camera-shutter.oga``, ...).

A sound's caption is made from its file name ("HorseGallop" -> "the sound of horse gallop"). These
are demos and smoke tests, not a benchmark: 149 clips, names written by the packagers.

``EMOJI_OF`` pairs sounds with the emoji concept that depicts their source (a dog's bark and the
dog emoji). It was written by hand for this project from the names alone, before any results were
seen, and is used to score audio -> image search through the pivot route.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from retrieval.errors import InputError
from retrieval.media.audio import is_audio_path

SCRATCH_DIR = Path("/usr/share/scratch/Media/Sounds")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
TUXPAINT_STAMPS = Path("/usr/share/tuxpaint/stamps")
CAPTION = "the sound of {}"

# sound (file stem) -> emoji concept name (as in retrieval.datasets.emoji). Only clear depictions.
EMOJI_OF = {
    "Bird": "bird", "Cat": "cat", "Kitten": "cat", "Meow": "cat", "Cricket": "cricket", "Crickets": "cricket",
    "Dog1": "dog", "Dog2": "dog", "Duck": "duck", "Goose": "goose", "Horse": "horse", "HorseGallop": "horse",
    "Owl": "owl", "Rooster": "rooster", "SeaLion": "seal", "WolfHowl": "wolf",
    "BalloonScratch": "balloon", "BellToll": "bell", "Bubbles": "bubbles", "CarPassing": "automobile",
    "DoorClose": "door", "DoorCreak": "door", "MotorcyclePassing": "motorcycle", "Typing": "keyboard",
    "WaterDrop": "droplet",
    "BabyCry": "baby", "Footsteps-1": "footprints", "Footsteps-2": "footprints",
    "Laugh-female": "rolling on the floor laughing", "Laugh-male1": "rolling on the floor laughing",
    "Laugh-male2": "rolling on the floor laughing", "Laugh-male3": "rolling on the floor laughing",
    "Scream-female": "face screaming in fear", "Scream-male1": "face screaming in fear",
    "Scream-male2": "face screaming in fear", "Sneeze-female": "sneezing face", "Sneeze-male": "sneezing face",
    "PartyNoise": "partying face",
    "GuitarStrum": "guitar", "GuitarChords1": "guitar", "GuitarChords2": "guitar", "Trumpet1": "trumpet",
    "Trumpet2": "trumpet", "Drum": "drum", "DrumBuzz": "drum", "DrumSet1": "drum", "DrumSet2": "drum",
    "HandClap": "clapping hands", "Shaker": "maracas", "Singer1": "singer", "Singer2": "singer",
    "alarm-clock-elapsed": "alarm clock", "bell": "bell", "camera-shutter": "camera",
    "phone-incoming-call": "mobile phone", "trash-empty": "wastebasket", "dialog-warning": "warning",
    "dialog-information": "information", "power-plug": "electric plug",
}


@dataclass(frozen=True)
class Sound:
    path: str
    name: str       # file stem, e.g. "HorseGallop"
    words: str      # "horse gallop"
    source: str     # "scratch" or "freedesktop"
    category: str   # scratch's folder ("Animal", ...); "event" for freedesktop


def words_of(stem: str) -> str:
    """'HorseGallop' -> 'horse gallop', 'Laugh-male1' -> 'laugh male', 'alarm-clock-elapsed' -> 'alarm clock elapsed'."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    return " ".join(w for w in re.split(r"[\s_\-]+", re.sub(r"\d+", " ", spaced).lower()) if w)


def _tuxpaint_sounds(root: Path) -> List[Sound]:
    """Tux Paint's stamp sound effects: ``NAME.ogg`` beside the stamp's ``NAME.txt``, whose first line
    names it ("A great blue heron." -> "a great blue heron"). Left out: the spoken names and
    descriptions in other languages (``NAME_fr.ogg``, ``NAME_desc_fr.ogg``) and the alphabets
    (spoken letters, named by how the letter is drawn: "u with umlaut filled")."""
    out = []
    for p in sorted(root.rglob("*.ogg")):
        txt = p.with_suffix(".txt")
        if "alphabets" in p.relative_to(root).parts or not txt.is_file():
            continue
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        words = lines[0].strip().rstrip(".!?").strip().lower() if lines else ""
        if not words or "=" in words:  # no English name: the file name says it
            words = words_of(p.stem)
        out.append(Sound(str(p), p.stem, words, "tuxpaint", p.parent.name))
    return out


def find_sounds(sources: Sequence[str] = ("scratch", "freedesktop")) -> List[Sound]:
    """Every named sound of the given Debian packages, sorted by path; a clear error if one is missing.
    ``tuxpaint`` (Tux Paint's stamp sounds, package tuxpaint-stamps-default, 121 clips, mostly
    animals and vehicles) is not among the defaults: the sounds suite measures it as a bank."""
    dirs = {"scratch": (SCRATCH_DIR, "scratch"), "freedesktop": (FREEDESKTOP_DIR, "sound-theme-freedesktop"),
            "tuxpaint": (TUXPAINT_STAMPS, "tuxpaint-stamps-default")}
    unknown = [s for s in sources if s not in dirs]
    if unknown:
        raise InputError(f"expected sound sources among {sorted(dirs)}, got {unknown}")
    out = []
    for src in sources:
        folder, package = dirs[src]
        if not folder.is_dir():
            raise InputError(f"expected the Debian package {package} at {folder}, which does not exist; "
                             f"apt-get install {package}" + ("" if src == "tuxpaint" else " (scripts/setup.sh does)"))
        if src == "tuxpaint":
            out += _tuxpaint_sounds(folder)
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file() and is_audio_path(p):
                out.append(Sound(str(p), p.stem, words_of(p.stem), src,
                                 p.parent.name if src == "scratch" else "event"))
    return out


def write_table(sounds: Sequence[Sound], path, caption: str = CAPTION) -> Path:
    """A CSV anchor table (audio, caption, label) for ``retrieval build --anchors/--pivot-anchors``."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audio", "caption", "label"])
        for s in sounds:
            w.writerow([s.path, caption.format(s.words), EMOJI_OF.get(s.name, "")])
    tmp.replace(path)
    return path


def prepare(out_dir, sources: Sequence[str] = ("scratch", "freedesktop"), *,
            exclude: Optional[Sequence[str]] = None) -> Dict[str, Path]:
    """Write ``sounds.csv`` (every sound, captioned) into ``out_dir``; ``exclude`` drops file stems."""
    sounds = [s for s in find_sounds(sources) if s.name not in set(exclude or ())]
    return {"sounds": write_table(sounds, Path(out_dir) / "sounds.csv")}
