#!/usr/bin/env bash
# Create .venv (if needed) and install the project into it. Usage: scripts/setup.sh [extras]
#   TORCH_SPEC  pip spec for torch (default: the 2.14.1 / 0.29.1 pair these CPU machines have on
#               local disk; on a CUDA machine set it to the build you want)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  "${PYTHON:-python3}" -m venv .venv
fi
py=.venv/bin/python
# constraints.txt: the versions the tests passed with (refresh: scripts/lock.sh)
pins=()
[ -f constraints.txt ] && pins=(--constraint constraints.txt)
"$py" -m pip install --quiet --upgrade pip
if ! "$py" -c "import torch, torchvision" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$py" -m pip install --quiet ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
fi
"$py" -m pip install --quiet "${pins[@]}" -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",test,"* ]] && ! "$py" -c "import deepspeed" 2>/dev/null; then
  # the DeepSpeed launch tests (tests/train/test_deepspeed.py): its build imports torch, so no
  # build isolation; no compiled ops (DeepSpeed's CPU accelerator, gloo)
  DS_BUILD_OPS=0 "$py" -m pip install --quiet --no-build-isolation "${pins[@]}" "deepspeed>=0.16"
fi
