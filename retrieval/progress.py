"""Progress bars on long work, off when nobody is watching (not a TTY) unless asked for."""

from __future__ import annotations

import sys
from typing import Iterable, Optional, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def want_progress(show: Optional[bool]) -> bool:
    """None means: show when stderr is an interactive terminal (sentence-transformers' convention)."""
    if show is None:
        return sys.stderr.isatty()
    return bool(show)


def progress(it: Iterable[T], *, total: Optional[int] = None, desc: str = "", show: Optional[bool] = None):
    """Wrap an iterable in a tqdm bar writing to stderr, or return it unchanged."""
    if not want_progress(show):
        return it
    return tqdm(it, total=total, desc=desc, unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)
