#!/usr/bin/env bash
# The timm and open_clip backends' tests (tests/test_hub_backends.py, marker "hub"), in a second
# environment, .venv-hub: both need torchvision, and no torchvision installs beside the CPU torch
# 2.13.0 wheel of the main environment; torch 2.14.1 with torchvision 0.29.1 do install together
# from this machine's disk (a CUDA build of torch, ~5.5 GB, that runs on the CPU). Safe to re-run:
# pip installs only what is missing. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
HUB_TORCH=(torch==2.14.1 torchvision==0.29.1)
[ -x .venv-hub/bin/python ] || "${PYTHON:-python3}" -m venv .venv-hub
.venv-hub/bin/python -m pip install -q --upgrade pip
.venv-hub/bin/python -m pip install -q "${HUB_TORCH[@]}"
.venv-hub/bin/python -m pip install -q "${HUB_TORCH[@]}" -e ".[hub,test]"
.venv-hub/bin/python -m pytest -q -m hub tests/test_hub_backends.py "$@"
