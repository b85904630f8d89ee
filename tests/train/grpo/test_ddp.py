"""Two CPU processes over gloo (torchrun, which accelerate picks up as MULTI_CPU): parameters
stay identical on both ranks after every step."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ddp_worker.py")


def test_two_process_grpo_keeps_ranks_identical(tiny_vlm, sets, tmp_path):
    _, _, qa = sets
    train = qa.split("train")
    train[train.type.isin(["Anomaly Detection", "Defect Localization"])].head(16).to_parquet(
        tmp_path / "q.parquet"
    )
    tiny_vlm.save(tmp_path / "base")
    launcher = Path(sys.executable).with_name("torchrun")
    cmd = [str(launcher), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", "29541", str(WORKER),
           str(tmp_path / "base"), str(tmp_path / "q.parquet"), str(tmp_path)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    assert rank0 == rank1 and rank0[1:] == ["2", "2"]  # same parameters, 2 steps, 2 processes
