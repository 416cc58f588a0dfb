"""Captions from file names, for a corpus whose files are named for what they show (``red_apple.png``,
``GoldenRetriever-02.jpg``). Only when asked (``build --captions-from names``): most photo folders
name files by camera counter or date, which say nothing of the picture, so such names give none."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

# Names cameras, phones and tools give: a counter or a date, no description.
GENERIC = re.compile(r"^(img|image|dsc|dscn|dscf|pxl|mvimg|photo|pic|picture|scan|screenshot|screen shot|"
                     r"untitled|whatsapp image|signal|file|frame|vid|p)(?=[\s\d_.-]|$)[\s\d_.-]*", re.I)
CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def name_caption(path: str) -> Optional[str]:
    """The words of a file's name (separators and camel case split, digits kept as words), or None
    when the name holds no word of three letters or more once a camera's generic prefix is gone."""
    stem = Path(path).stem
    words = " ".join(re.sub(r"[_\-.+,()\[\]]+", " ", CAMEL.sub(" ", stem)).split())
    if GENERIC.match(words) and not re.search(r"[A-Za-z]{3,}", GENERIC.sub("", words, count=1)):
        return None
    if not re.search(r"[A-Za-z]{3,}", words):
        return None
    return words.lower()
