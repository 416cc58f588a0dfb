"""Pictures with a caption each, from Debian packages, for evaluation beyond emoji.

Each source gives ``Picture(path, caption, concept)`` rows: one picture per caption, as most users'
anchor sets are (a photo and its caption), not several drawings of one concept. Pictures whose
captions name the same thing share a ``concept``, so that a split by concept keeps every query
concept out of the anchors.

* ``tuxpaint``: Tux Paint's stamps (Debian ``tuxpaint-stamps-default``): drawings and photos of
  animals, food, plants, vehicles, clothes..., each with a one-line English description
  ("A frog."); letters and sign-language hands are left out.
* ``openclipart``: the Open Clip Art Library (Debian ``openclipart-svg``): clip art, its title from
  the SVG's own metadata (``dc:title``), rendered with cairosvg.
* ``scratch``: Scratch 1.4's costumes (Debian ``scratch``, installed by setup for its sounds):
  cartoon sprites named by file ("cat1-a" -> "cat"; "car-blue" -> "car blue").
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional

from retrieval.errors import InputError

TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
SCRATCH_COSTUMES = Path("/usr/share/scratch/Media/Costumes")
PACKAGES = {"tuxpaint": "tuxpaint-stamps-default", "openclipart": "openclipart-svg", "scratch": "scratch"}
TUXPAINT_SKIP = {"lowercase", "uppercase", "asl"}  # letters of the alphabet and sign-language hands
SCRATCH_SKIP = {"Letters"}


@dataclass(frozen=True)
class Picture:
    path: str
    caption: str
    concept: str
    category: str = ""  # the package's folder it sits in ("animals"), for classification suites


def concept_of(caption: str) -> str:
    """What a caption names, for grouping: lower case, articles and punctuation dropped."""
    words = re.sub(r"[^\w\s]", " ", caption.lower()).split()
    return " ".join(w for w in words if w not in ("a", "an", "the", "some")) or caption.lower().strip()


def _missing(source: str, where: Path) -> InputError:
    return InputError(f"expected the {source} pictures at {where}, found none: install the Debian package "
                      f"{PACKAGES[source]} (apt-get install {PACKAGES[source]})")


def tuxpaint(root: Path = TUXPAINT_DIR) -> List[Picture]:
    if not root.is_dir():
        raise _missing("tuxpaint", root)
    out = []
    for txt in sorted(root.rglob("*.txt")):
        if TUXPAINT_SKIP & set(txt.relative_to(root).parts):
            continue
        png = txt.with_suffix(".png")
        if not png.is_file():
            continue
        first = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = first[0].strip() if first else ""
        if caption and "=" not in caption:
            out.append(Picture(str(png), caption, concept_of(caption), _category(png, root)))
    return out


_TITLE = re.compile(r"<cc:Work[^>]*>.*?<dc:title>([^<]*)</dc:title>", re.S)


def openclipart(root: Path = OPENCLIPART_DIR, limit: Optional[int] = 2000) -> List[Picture]:
    """Clip art with a meaningful title; one file per distinct content (the package lists many files
    under several categories); pictures of at most ``limit`` concepts, chosen by a stable hash."""
    if not root.is_dir():
        raise _missing("openclipart", root)
    seen, out = set(), []
    for svg in sorted(root.rglob("*.svg")):
        data = svg.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        m = _TITLE.search(data[:20000].decode("utf-8", errors="replace"))
        title = _clean_title(m.group(1)) if m else ""
        if len(title) < 3 or title.lower() in ("untitled", "clipart", "clip art", "image", "drawing"):
            continue
        out.append(Picture(str(svg), title, concept_of(title), _category(svg, root)))
    if limit is not None:  # at most ``limit`` concepts, chosen by a stable hash of the concept
        from retrieval.datasets.emoji import stable_hash

        keep = set(sorted({p.concept for p in out}, key=lambda c: stable_hash("openclipart:" + c))[:limit])
        out = [p for p in out if p.concept in keep]
    return out


def _category(path: Path, root: Path) -> str:
    """The top folder under the source's root, as words: "naturalforces" -> "natural forces",
    "signs_and_symbols" -> "signs and symbols", "Animals" -> "animals"."""
    folder = path.relative_to(root).parts[0].lower()
    return CATEGORY_WORDS.get(folder, folder.replace("_", " "))


# Folder names that are not words as they stand.
CATEGORY_WORDS = {"naturalforces": "natural forces"}


def _clean_title(title: str) -> str:
    """File-name-like titles made readable: "arbre_modern_bw" -> "arbre modern bw", "tigre05" -> "tigre"."""
    words = re.sub(r"[_\-]+", " ", title.replace("openclipart", " ")).split()
    words = [re.sub(r"\d+$", "", w) for w in words if not re.fullmatch(r"[\d.]+", w)]
    return " ".join(w for w in words if w)


def scratch(root: Path = SCRATCH_COSTUMES) -> List[Picture]:
    if not root.is_dir():
        raise _missing("scratch", root)
    out = []
    for f in sorted(root.rglob("*")):
        if f.suffix.lower() not in (".png", ".gif") or SCRATCH_SKIP & set(f.relative_to(root).parts):
            continue
        name = re.sub(r"-[a-z]$", "", f.stem.lower())           # costume frames: cat1-a, cat1-b
        name = re.sub(r"[\d_]+", " ", name).replace("-", " ")    # cat1 -> cat; car-blue -> car blue
        name = " ".join(name.split())
        if len(name) >= 2:
            out.append(Picture(str(f), f"a picture of {name}", name, _category(f, root)))
    return out


SOURCES = {"tuxpaint": tuxpaint, "openclipart": openclipart, "scratch": scratch}

# The categories of each source that name what their pictures show, for zero-shot classification
# (chosen by their names, before any measurement): Tux Paint's and Scratch's folders with at least
# ten pictures; Open Clip Art's less its folders of icons, shapes, symbols and leftovers ("computer",
# "shapes", "signs and symbols", "special", "unsorted", "buttons", "logos", "decorations") and of few
# pictures ("containers", "science", "education").
CATEGORIES = {
    "tuxpaint": ("animals", "clothes", "food", "hobbies", "household", "plants", "seasonal", "space", "sports",
                 "symbols", "town", "vehicles"),
    "scratch": ("animals", "fantasy", "people", "things", "transportation"),
    "openclipart": ("animals", "buildings", "electronics", "food", "geography", "office", "people", "plants",
                    "recreation", "tools", "transportation"),
}


def categorised(source: str, **kw) -> List[Picture]:
    """The pictures of a source that sit in one of its :data:`CATEGORIES` (every picture, not one a concept)."""
    keep = set(CATEGORIES[source]) if source in CATEGORIES else None
    if keep is None:
        raise InputError(f"expected a picture source with categories in {sorted(CATEGORIES)}, got {source!r}")
    return [p for p in load(source, **kw) if p.category in keep]


def load(source: str, **kw) -> List[Picture]:
    if source not in SOURCES:
        raise InputError(f"expected a picture source in {sorted(SOURCES)}, got {source!r}")
    return SOURCES[source](**kw)


def _render(src: str, dst: str, size: int) -> bool:
    """One SVG to a PNG on white, its longer side ``size`` (aspect kept); False when cairosvg cannot."""
    import io

    import cairosvg
    from PIL import Image

    try:
        png = cairosvg.svg2png(url=src, output_width=size)
        img = Image.open(io.BytesIO(png)).convert("RGBA")
    except Exception:  # noqa: BLE001 - some clip art uses SVG features cairosvg lacks: left out
        return False
    img.thumbnail((size, size))
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(img, ((size - img.width) // 2, (size - img.height) // 2))
    tmp = f"{dst}.tmp.png"
    canvas.convert("RGB").save(tmp, format="PNG")
    os.replace(tmp, dst)  # a crash never leaves a half-written PNG to be reused
    return True


def rendered(pictures: List[Picture], folder: Path, size: int = 256,
             show_progress_bar: Optional[bool] = None) -> List[Picture]:
    """SVG pictures rendered to PNG on white, once (cached under ``folder``, named by a hash of the
    source path); the others as they are. Pictures that cannot be rendered are left out."""
    try:
        import cairosvg  # noqa: F401
    except ImportError as exc:
        raise InputError("rendering SVG pictures needs cairosvg; pip install cairosvg") from exc
    from retrieval.progress import progress

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in progress(pictures, total=len(pictures), desc="render SVG pictures", show=show_progress_bar):
        if not p.path.lower().endswith(".svg"):
            out.append(p)
            continue
        dst = str(folder / (hashlib.sha256(p.path.encode()).hexdigest()[:20] + ".png"))
        if os.path.isfile(dst) or _render(p.path, dst, size):
            out.append(replace(p, path=dst))
    return out
