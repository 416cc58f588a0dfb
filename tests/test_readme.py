"""Every command block of the README, run as written, from the repository's folder.

The first command (setup, then the demo) is run literally and its output checked; the second (setup,
then the tests) is what CI runs: .ci/run must call exactly it (running it here would run this test
again). The tour's shell lines and Python block then run against the demo collection they built."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(bash|python)\n(.*?)```", README, flags=re.S)


def commands(block: str):
    """The block's command lines (comments and blank lines are not commands)."""
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_has_the_two_commands_then_the_tour():
    assert [kind for kind, _ in BLOCKS] == ["bash", "bash", "python"]
    assert commands(BLOCKS[0][1]) == ["bash scripts/setup.sh && .venv/bin/retrieval demo",
                                      "bash scripts/setup.sh && .venv/bin/python -m pytest -q && bash scripts/test_hub.sh"]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands(BLOCKS[0][1])[1] in ci.splitlines()  # CI runs the README's test command, exactly


def run(line: str, timeout: int):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def demo():
    """The README's first command, as written: setup (installs nothing new here), then the full demo
    into indexes/emoji-demo with a cold anchor cache (the tests' own)."""
    if not (ROOT / ".venv" / "bin" / "retrieval").exists():
        pytest.skip("no .venv in the repository: the README's commands assume scripts/setup.sh made it")
    proc = run(commands(BLOCKS[0][1])[0], timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_demo_command_finds_the_apple(demo):
    from retrieval import Collection

    assert "zero-shot" in demo and "top-1" in demo
    apple = demo.split("'an emoji of a red apple'")[1].split("'an emoji of a dog face'")[0]
    assert "an emoji of red apple" in apple  # in the top 5 of the README's headline query
    col = Collection.open(ROOT / "indexes" / "emoji-demo")
    assert col.info()["counts"]["items"] > 1500
    if shutil.which("npm"):  # four further drawings of the anchors (setup's npm styles): a style normaliser
        info = col.info()
        assert col.style is not None and info["anchors"]["views"] > 4 * info["counts"]["anchors"] > 6000
        assert info["projector"]["k"] == 32
        assert "(Noto + OpenMoji + Fluent Emoji + EmojiOne + EmojiOne v1 drawings of each" in demo


EXPECT = {  # the answer each tour line must print, as a pattern over its output lines (it must also exit 0)
    "search indexes/emoji-demo \"an emoji of a red apple\"": r"^\s+1[=~]?\s.*\ban emoji of red apple$",  # rank 1, '=': by its caption
    "--image indexes/.emoji-data/noto/1f436.png": r"^\s+1\s.*\ban emoji of dog face$",  # the Twemoji dog first
    "--audio": r"^\s+[1-5]\s.*\ban emoji of [a-z ]*\bdog\b",  # a dog among the five
    "explain": r"<- chosen",
    "classify": r"1f680\.png\s+Travel & Places \(",  # the rocket, top-1
    "info": r"efficientnet-lite0-multi",
}


@pytest.mark.parametrize("line", commands(BLOCKS[1][1]))
def test_tour_line_runs_as_written(demo, line):
    if "--audio" in line and not Path("/usr/share/scratch/Media/Sounds/Animal/Dog1.wav").is_file():
        pytest.skip("Debian's scratch sounds are not installed (scripts/setup.sh installs them)")
    proc = run(line, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = next(v for k, v in EXPECT.items() if k in line)
    assert re.search(want, proc.stdout, flags=re.M), proc.stdout[-2000:]


def test_python_block_runs_as_written(demo):
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", BLOCKS[2][1]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "an emoji of red apple" in proc.stdout and "route relative" in proc.stdout
