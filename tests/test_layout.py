"""The package's shape is checked, not hoped for: layers point down (import-linter contracts in
pyproject.toml), no module imports itself back through others (function-level imports count), and
ruff is clean. .ci/run runs the same tools; here they run under the README's test command too."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/setup.sh installs it with the 'test' extra")
    return str(path)


def test_import_contracts_are_kept():
    res = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def import_cycles(package: str):
    """Groups of modules of ``package`` that import each other, directly or through others (the
    strongly connected components of the import graph with more than one module; Tarjan). The root
    package is left out: it only re-exports the facade."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(m):
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        on_stack.add(m)
        for n in sorted(graph.find_modules_directly_imported_by(m)):
            if n == package or n not in graph.modules:
                continue
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            comp = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                comp.append(n)
                if n == m:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph.modules - {package}):
        if m not in index:
            visit(m)
    return cycles


def test_no_import_cycles_between_modules():
    assert import_cycles("retrieval") == [], "modules that import each other (directly or through others)"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path, monkeypatch):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyc import b\n")
    (pkg / "b.py").write_text("from cyc import c\n")
    (pkg / "c.py").write_text("import cyc.a\n")
    (pkg / "d.py").write_text("import cyc.a\n")  # imports into the cycle, is not part of it
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyc") == [["cyc.a", "cyc.b", "cyc.c"]]


def test_ruff_is_clean():
    res = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:]
