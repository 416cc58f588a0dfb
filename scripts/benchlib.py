"""Shared by the benchmark scripts: print a report and, when asked, write it as Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence


def report(lines: Sequence[str], out: Optional[str]) -> str:
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    return text
