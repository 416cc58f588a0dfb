"""Captions embedded in image files: what photo tools write when a person describes a picture.

In order: the XMP description (``dc:description``), the IPTC caption (2:120), the EXIF
``ImageDescription``; else the keywords (XMP ``dc:subject`` or IPTC 2:25), joined by commas. Cameras
fill ``ImageDescription`` with their own name ("OLYMPUS DIGITAL CAMERA"): such texts, and any that
repeat the EXIF make or model, are not captions. A file whose metadata cannot be parsed has none;
the caller counts it, it is never fatal (the metadata is the file's author's, not the user's input).
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

log = logging.getLogger(__name__)

BOILERPLATE = frozenset({"olympus digital camera", "sony dsc", "digital camera", "kodak digital still camera",
                         "minolta digital camera", "konica minolta digital camera", "lg digital camera",
                         "hp digital camera", "samsung digital camera", "camera", "dsc", "dcim", "default",
                         "untitled", "image", "picture", "photo", "description", "no description", "none"})
EXIF_DESCRIPTION, EXIF_MAKE, EXIF_MODEL = 270, 271, 272
IPTC_CAPTION, IPTC_KEYWORDS = (2, 120), (2, 25)


def _texts(node) -> List[str]:
    """Every text under an XMP node as Pillow parses it (strings, ``{"text": ...}``, Alt/Bag/Seq lists)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        if "text" in node:
            return _texts(node["text"])
        return [t for v in node.values() for t in _texts(v)]
    if isinstance(node, (list, tuple)):
        return [t for v in node for t in _texts(v)]
    return []


def _find(node, key: str) -> List[str]:
    """The texts of every XMP element named ``key`` (namespaces already dropped by Pillow)."""
    if isinstance(node, dict):
        return [t for k, v in node.items() for t in (_texts(v) if k == key else _find(v, key))]
    if isinstance(node, (list, tuple)):
        return [t for v in node for t in _find(v, key)]
    return []


def _decoded(value) -> List[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def fields(img) -> Dict[str, List[str]]:
    """The candidate texts of an open image, by where they came from."""
    from PIL import IptcImagePlugin

    xmp = img.getxmp() if hasattr(img, "getxmp") else {}
    iptc = IptcImagePlugin.getiptcinfo(img) or {}
    exif = img.getexif()
    return {"xmp description": _find(xmp, "description"), "iptc caption": _decoded(iptc.get(IPTC_CAPTION, [])),
            "exif description": _decoded(exif.get(EXIF_DESCRIPTION, [])),
            "keywords": _find(xmp, "subject") or _decoded(iptc.get(IPTC_KEYWORDS, [])),
            "camera": _decoded(exif.get(EXIF_MAKE, [])) + _decoded(exif.get(EXIF_MODEL, []))}


def is_caption(text: str, camera: Sequence[str]) -> bool:
    t = " ".join(text.replace("\x00", " ").split())
    return bool(t) and t.casefold() not in BOILERPLATE and t.casefold() not in {c.strip().casefold() for c in camera}


def caption_of(found: Dict[str, List[str]]) -> Optional[str]:
    """The first real caption of :func:`fields`' texts, else the keywords joined, else None."""
    for where in ("xmp description", "iptc caption", "exif description"):
        for text in found[where]:
            if is_caption(text, found["camera"]):
                return " ".join(text.replace("\x00", " ").split())
    words = [" ".join(k.split()) for k in found["keywords"] if is_caption(k, found["camera"])]
    return ", ".join(words) if words else None


def embedded_caption(path) -> Tuple[Optional[str], bool]:
    """(the caption embedded in the image file at ``path`` or None, whether its metadata was readable)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return caption_of(fields(img)), True
    # Whatever a file's own metadata makes the parsers raise, the file has no caption; counted by the caller.
    except Exception as exc:  # noqa: BLE001
        log.debug("unreadable metadata in %s: %s", path, exc)
        return None, False
