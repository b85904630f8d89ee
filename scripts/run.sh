#!/usr/bin/env bash
# Set up, then reproduce the whole workflow on the offline default with DVC.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KEDRO_DISABLE_TELEMETRY=true PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
dvc repro "$@"
echo "dvc repro finished in $(( $(date +%s) - start )) s."
echo "Browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
