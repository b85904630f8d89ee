#!/usr/bin/env bash
# Set up, then reproduce the whole workflow on the offline default with DVC.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KEDRO_DISABLE_TELEMETRY=true HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" PATH="$PWD/.venv/bin:$PATH"
start=$(date +%s)
dvc repro "$@"
echo "dvc repro finished in $(( $(date +%s) - start )) s."
if [ -f data/08_reporting/ablation.md ]; then
  echo; cat data/08_reporting/ablation.md
fi
echo "Browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db"
