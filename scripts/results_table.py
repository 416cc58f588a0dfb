"""The cross-suite table of results/README.md: suites as rows, methods as columns, the default marked.

Reads the ``summary.json`` that ``retrieval eval --suite pictures``, ``--suite digits``, ``--suite
sounds``, ``--suite instruments`` and ``--suite crossdomain`` write beside their READMEs and prints the table (Markdown); ``--write`` replaces the table
between the markers in results/README.md. A method a suite does not measure is left blank.

    .venv/bin/python scripts/results_table.py --write
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"
BEGIN, END = "<!-- suites-table: begin (scripts/results_table.py) -->", "<!-- suites-table: end -->"
COLUMNS = ("chance", "plain ASIF k=64 p=8 (baseline)", "Procrustes", "CSA", "NNN", "label bridge alone",
           "default before whitening and the bank", "default before the background bank", "**default**",
           "default - plain (95% interval)")
GAIN = COLUMNS[-1]


def interval(g) -> str:
    """A gain and its paired-bootstrap interval, as the suites store them (retrieval.core.metrics.paired_interval)."""
    return f"{g['gain']:+.3f} ({g['low']:+.3f} … {g['high']:+.3f})"


def picture_rows(summary):
    # the pictures suite's method names, by the column they belong to
    names = {"chance": "chance", "plain ASIF": COLUMNS[1], "Procrustes": "Procrustes", "CSA": "CSA",
             "NNN": "NNN", "label bridge alone": "label bridge alone",
             "default without whitening or background bank": "default before whitening and the bank",
             "default without the background bank": "default before the background bank",
             "**engine default**": "**default**"}
    for source, v in summary.items():
        cells = {}
        for r in v["rows"]:
            col = next((c for key, c in names.items() if r["method"].startswith(key) or key in r["method"]), None)
            if col:
                cells[col] = f"{r['R@10']:.3f} / {r['R@1']:.3f}"
            if col == "**default**" and "gain R@10" in r:
                cells[GAIN] = interval(r["gain R@10"])
        yield (f"{source}: text -> image, one picture per caption, unseen concepts ({v['queries']} queries), "
               "R@10 / R@1", "`retrieval eval --suite pictures`", cells)
    for source, v in summary.items():  # the same test splits turned round (measured since 2026-12-03)
        if "image -> text" not in v:
            continue
        cells = {}
        for r in v["image -> text"]:
            col = next((c for key, c in names.items() if r["method"].startswith(key) or key in r["method"]), None)
            if col:
                cells[col] = f"{r['R@10']:.3f} / {r['R@1']:.3f}" + (" (route relative)" if col == "**default**" else "")
            if col == "**default**" and "gain R@10" in r:
                cells[GAIN] = interval(r["gain R@10"])
        yield (f"{source}: image -> text, the same split turned round ({v['queries']} queries), R@10 / R@1",
               "`retrieval eval --suite pictures`", cells)


def digit_row(summary):
    cells, before = {}, None
    for r in summary["rows"]:
        m = r["method"]
        if m.startswith("ASIF k=64 p=8"):
            cells[COLUMNS[1]] = f"{r['top-1']:.3f}"
            cells["chance"] = f"{r['chance top-1']:.3f}"
        elif "without whitening or background bank" in m:
            cells["default before whitening and the bank"] = f"{r['top-1']:.3f}"
        elif "without the background bank" in m:
            cells["default before the background bank"] = f"{r['top-1']:.3f}"
        elif "(the default before)" in m:  # inputs centred on the anchors' mean
            before = f"{r['top-1']:.3f}"
        elif m.startswith("**ASIF default**"):
            cells["**default**"] = f"{r['top-1']:.3f}"
    if "**default**" in cells and before:
        cells["**default**"] += (f" (with the bank, inputs centred on the corpus, no whitening; {before} whitened, "
                                 f"without the bank and on the "
                                 f"anchors' mean, the default before)")
    if "gain top-1" in summary:
        cells[GAIN] = interval(summary["gain top-1"])
    return ("MNIST digits, zero-shot classification with scikit-learn digit anchors, top-1",
            "`retrieval eval --suite digits`", cells)


def sound_rows(summary, suite="sounds", what="named sounds"):
    """Text -> audio and back; the default is the route the planner takes (its measured best)."""
    for direction in ("text -> audio", "audio -> text"):
        if direction not in summary["tables"]:
            continue
        cells, pick = {}, summary["picks"][direction]
        prefix = {"relative": "relative: ASIF engine default", "translation": "translation: orthogonal",
                  "fusion": "fusion (RRF)"}[pick]
        for r in summary["tables"][direction]:
            m, v = r["method"], f"{r['R@10']:.3f} / {r['R@1']:.3f}"
            if m == "chance":
                cells["chance"] = v
            elif m.startswith("plain ASIF"):
                cells[COLUMNS[1]] = v
            elif m.startswith("translation: orthogonal"):
                cells["Procrustes"] = v
            elif m.startswith("CSA"):
                cells["CSA"] = v
            elif "NNN" in m:
                cells["NNN"] = v
            if m.startswith(prefix):
                cells["**default**"] = f"{v} (the planner's route: {pick})"
        if direction in summary.get("gains", {}):
            cells[GAIN] = interval(summary["gains"][direction])
        yield (f"{what}, {direction}, each half against the other's anchors, {summary['splits']} two-fold "
               f"splits averaged ({summary['queries']} queries), R@10 / R@1 (sounds are not whitened and have no background bank)",
               f"`retrieval eval --suite {suite}`", cells)


def crossdomain_rows(summary):
    """Anchors of another domain than the corpus (the own-domain reference rows are the pictures suite's job)."""
    for name, v in summary.items():
        if "own domain" in name:
            continue
        cells = {"chance": f"{v['chance']:.3f}", COLUMNS[1]: f"{v['plain ASIF (baseline)']:.3f}",
                 "**default**": f"{v['default build']:.3f}", GAIN: interval(v["default vs plain"])}
        yield (f"{name.replace(': ', ' corpus, ')} of another domain ({v['items']} queries), text -> image, R@10",
               "`retrieval eval --suite crossdomain`", cells)


def table() -> str:
    rows = []
    pictures = RESULTS / "pictures" / "summary.json"
    if pictures.is_file():
        rows += list(picture_rows(json.loads(pictures.read_text())))
    for name, fn in (("digits", lambda s: [digit_row(s)]), ("sounds", sound_rows),
                     ("instruments", lambda s: sound_rows(s, "instruments", "General MIDI sounds")),
                     ("crossdomain", crossdomain_rows)):
        f = RESULTS / name / "summary.json"
        if f.is_file():
            rows += list(fn(json.loads(f.read_text())))
    lines = ["| suite | command | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for suite, command, cells in rows:
        lines.append(f"| {suite} | {command} | " + " | ".join(
            f"**{cells[c]}**" if c == "**default**" and c in cells else cells.get(c, "") for c in COLUMNS) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="replace the table in results/README.md")
    a = ap.parse_args()
    text = table()
    print(text)
    if a.write:
        readme = RESULTS / "README.md"
        body = readme.read_text(encoding="utf-8")
        if BEGIN not in body or END not in body:
            raise SystemExit(f"expected the markers {BEGIN!r} and {END!r} in {readme}; add them where the table goes")
        head, rest = body.split(BEGIN, 1)
        tmp = readme.with_name(readme.name + ".tmp")  # written whole, then renamed over the old one
        tmp.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")
        tmp.replace(readme)


if __name__ == "__main__":
    main()
