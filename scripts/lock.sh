#!/usr/bin/env bash
# Refresh constraints.txt: resolve the newest versions pyproject.toml's bounds allow, in a new
# virtual environment, and record them. Then run `bash scripts/test.sh` and commit both files.
#   bash scripts/lock.sh
# torch and torchvision are left out (TORCH_SPEC chooses the build: CPU here, CUDA on a GPU
# machine), and so are the CUDA wheels torch brings.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"${PYTHON:-python3}" -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086
"$py" -m pip install --quiet ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
"$py" -m pip install --quiet ".[test,notebook]"
DS_BUILD_OPS=0 "$py" -m pip install --quiet --no-build-isolation "deepspeed>=0.16"
{
  echo "# The versions the tests passed with (scripts/setup.sh installs with them; CI too)."
  echo "# Refresh: bash scripts/lock.sh, then bash scripts/test.sh, and commit."
  "$py" -m pip freeze --exclude-editable | grep -v -i -E '^(emit-iad|torch|torchvision|triton|nvidia-|cuda-)' \
    | sed -E 's/^deepspeed @ .*/deepspeed==PLACEHOLDER/'
} > "$tmp/constraints.txt"
ds=$("$py" -c "import deepspeed; print(deepspeed.__version__)")
sed -i "s/deepspeed==PLACEHOLDER/deepspeed==$ds/" "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pinned packages"
