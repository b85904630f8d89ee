"""The prepared GPU check runs end to end on the CPU with --tiny (shrunk layouts): every phase
goes through the project's trainers and is printed beside its memory estimate."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_with_tiny_layouts_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--tiny", "--out", str(out)]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    phases = json.loads(out.read_text())["phases"]
    names = [p["phase"] for p in phases]
    assert [n.split(" (")[0] for n in names] == [
        "InternVL3 SFT step", "InternVL3 GRPO step", "InternVL3 validation",
        "InternVL3 evaluation", "Qwen2.5-VL-3B GRPO step"]  # fmt: skip
    for p in phases:
        assert p["estimate_gib"] > 0 and p["seconds"] > 0 and p["peak_gib"] is None, p
    assert "| InternVL3 SFT step" in done.stdout  # the table is printed as it goes
