"""Two CPU processes over gloo, started by torchrun or by `accelerate launch --multi_gpu` (its
torchrun launcher; the harness then picks MULTI_CPU): parameters stay identical on both ranks
after every step. (`accelerate launch --cpu` runs one process unless wrapped in mpirun.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_grpo_keeps_ranks_identical(tiny_vlm, sets, tmp_path, launcher):
    _, _, qa = sets
    train = qa.split("train")
    train[train.type.isin(["Anomaly Detection", "Defect Localization"])].head(16).to_parquet(
        tmp_path / "q.parquet"
    )
    tiny_vlm.save(tmp_path / "base")
    bin_ = Path(sys.executable).parent
    if launcher == "torchrun":
        start = [str(bin_ / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                 "--master_port", "29541"]  # fmt: skip
    else:
        start = [str(bin_ / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                 "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                 "--main_process_port", "29542"]  # fmt: skip
    cmd = [*start, str(WORKER), str(tmp_path / "base"), str(tmp_path / "q.parquet"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    assert rank0 == rank1 and rank0[1:] == ["2", "2"]  # same parameters, 2 steps, 2 processes


def test_a_gather_that_never_meets_stops_with_rank_and_step_named():
    bin_ = Path(sys.executable).parent
    cmd = [str(bin_ / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", "29543", str(Path(__file__).with_name("timeout_worker.py"))]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    out = done.stdout + done.stderr
    assert "STOPPED after" in out, out[-3000:]
    line = next(x for x in out.splitlines() if "STOPPED after" in x)
    assert "rank 0 of 2, step 7" in line and "grpo.collective_timeout_s" in line
    assert int(line.split("after ")[1].split("s")[0]) < 10  # the timeout, not the hang
