#!/usr/bin/env bash
# Set up with the test extras, lint, then run the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
export KEDRO_DISABLE_TELEMETRY=true PATH="$PWD/.venv/bin:$PATH"
ruff check src tests benchmarks
pytest "$@"
