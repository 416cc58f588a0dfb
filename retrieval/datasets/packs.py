"""Anchor packs: named sets of pairs made from what Debian packages and PyPI wheels install here.

``--anchors pack:NAME`` is for a user with no pairs of their own, or a few to add to (``--anchors``
is repeatable). Each pack is written once as a table in the cache (``$RETRIEVAL_CACHE/packs``),
atomically, and then read like any anchor table, so its content hash and the encodings cached by it
are those of a table a user would write. ``retrieval anchors list`` shows them and whether each can
be made here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from retrieval.errors import InputError, UnknownNameError

Rows = Tuple[List[str], List[str]]  # (media paths, captions)


@dataclass(frozen=True)
class Pack:
    modality: str
    description: str
    rows: Callable[[Path, Optional[bool]], Rows]  # (cache folder, progress) -> rows
    needs: Callable[[], List[str]]                 # what it is made from: present here or not


def _paths(*modules_attrs: Tuple[str, str]) -> Callable[[], List[str]]:
    def needs() -> List[str]:
        import importlib

        return [str(getattr(importlib.import_module(f"retrieval.datasets.{m}"), a)) for m, a in modules_attrs]
    return needs


def _emoji(cache: Path, show: Optional[bool]) -> Rows:
    from retrieval.datasets.emoji import noto_pairs

    # the background bank's own folder and captions: one rendering serves both
    return noto_pairs(cache.parent / "background" / "emoji", "an emoji of {}", show_progress_bar=show)


def _pictures(source: str):
    def rows(cache: Path, show: Optional[bool]) -> Rows:
        from retrieval.datasets import pictures

        pics = pictures.load(source)
        if any(p.path.lower().endswith(".svg") for p in pics):
            pics = pictures.rendered(pics, cache / f"{source}-png", show_progress_bar=show)
        return [p.path for p in pics], [p.caption for p in pics]
    return rows


def _sounds(*sources: str):
    def rows(cache: Path, show: Optional[bool]) -> Rows:
        from retrieval.datasets.sounds import CAPTION, find_sounds

        found = find_sounds(sources)
        return [s.path for s in found], [CAPTION.format(s.words) for s in found]
    return rows


def _noto_font() -> List[str]:
    from retrieval.datasets.emoji import NOTO_FONT_PATHS

    return [next((p for p in NOTO_FONT_PATHS if os.path.isfile(p)), NOTO_FONT_PATHS[0])]


PACKS: Dict[str, Pack] = {
    "emoji": Pack("image", "every emoji Noto Color Emoji draws, captioned 'an emoji of NAME' (the background "
                  "bank's pairs; Debian fonts-noto-color-emoji)", _emoji, lambda: _noto_font()),
    "tuxpaint": Pack("image", "Tux Paint's stamps, drawings and photo cut-outs with their one-line descriptions "
                     "(Debian tuxpaint-stamps-default)", _pictures("tuxpaint"), _paths(("pictures", "TUXPAINT_DIR"))),
    "scratch": Pack("image", "Scratch 1.4's costumes, named by file (Debian scratch)", _pictures("scratch"),
                    _paths(("pictures", "SCRATCH_COSTUMES"))),
    "openclipart": Pack("image", "Open Clip Art, titled by its SVGs' metadata, rendered to PNG (Debian "
                        "openclipart-svg; the first 2,000)", _pictures("openclipart"),
                        _paths(("pictures", "OPENCLIPART_DIR"))),
    "sounds": Pack("audio", "named sound effects of Scratch and the freedesktop sound theme (Debian scratch, "
                   "sound-theme-freedesktop)", _sounds("scratch", "freedesktop"),
                   _paths(("sounds", "SCRATCH_DIR"), ("sounds", "FREEDESKTOP_DIR"))),
}


def pack_table(name: str, cache: Path, show_progress_bar: Optional[bool] = None) -> Path:
    """The pack's anchor table (made once, atomically, under ``cache/packs``)."""
    if name not in PACKS:
        raise UnknownNameError(f"unknown anchor pack {name!r}; packs: {', '.join(sorted(PACKS))} "
                               f"('retrieval anchors list' says which can be made here)")
    pack = PACKS[name]
    folder = Path(cache) / "packs"
    table = folder / f"{name}.parquet"
    if table.is_file():
        return table
    paths, captions = pack.rows(folder, show_progress_bar)
    if not paths:
        raise InputError(f"expected pairs in the anchor pack {name!r}, found none here ({pack.description})")
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    tmp = table.with_name(f".{table.name}.{os.getpid()}.tmp")
    pq.write_table(pa.table({pack.modality: paths, "caption": captions}), tmp)
    os.replace(tmp, table)
    return table


def list_packs(cache: Path) -> List[Dict]:
    """Every pack: name, modality, description, its pairs when made, and what it is made from that
    is missing here (nothing: it can be made)."""
    import pyarrow.parquet as pq

    out = []
    for name, pack in PACKS.items():
        table = Path(cache) / "packs" / f"{name}.parquet"
        row = {"name": name, "modality": pack.modality, "description": pack.description}
        if table.is_file():
            row["pairs"] = pq.read_metadata(table).num_rows
        row["missing"] = [p for p in pack.needs() if not os.path.exists(p)]
        out.append(row)
    return out
