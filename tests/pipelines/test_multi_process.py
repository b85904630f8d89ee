"""README's launcher with two CPU processes over gloo, through `kedro run`: one MLflow run and
one registered version per launch, the processes' parameters equal after every step, the
learning rate per step that of a single process with the same global batch, and
difficulty-aware GRPO (decided on the global batch) finishing instead of hanging."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import _reset_mlflow_globals, edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(project: Path, pipeline: str, timeout: int = 600) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(free_port()), "-m", "kedro", "run", f"--pipelines={pipeline}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "RANK", "LOCAL_RANK"):
        env.pop(var, None)
    done = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def runs_and_versions(project: Path, stage: str) -> tuple[list, list]:
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emit-iad")
    runs = [r for r in client.search_runs([experiment.experiment_id])
            if r.info.run_name == stage]  # fmt: skip
    return runs, client.search_model_versions(f"name = 'emit-iad-{stage}'")


def test_two_processes_one_run_one_version_equal_ranks_single_process_lr(project):
    for stage in ("ingestion", "descriptions", "qa", "model"):
        run_pipeline(project, stage)
    # a short warm-up: the model stays weak, so many GRPO prompts are difficult on both ranks
    edit_params(project, "sft", epochs=1, batch_size=4, warmup_ratio=0.5, val_max_questions=0,
                checkpoint_every=0)  # fmt: skip
    edit_params(project, "grpo", steps=3, batch_size=2, group_size=4, max_new_tokens=8,
                difficulty_aware=True, max_resample_rounds=2, warmup_ratio=0.5,
                val_max_questions=0, probe_prompts=0, checkpoint_every=0,
                collective_timeout_s=120)  # fmt: skip

    launch(project, "sft")
    runs, versions = runs_and_versions(project, "sft")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and len(versions) == 1
    two = pd.read_csv(project / "data/08_reporting/sft_history.csv").dropna(subset=["loss"])
    assert len(two) >= 3 and (two.rank_param_spread == 0).all()  # equal after every step

    launch(project, "grpo")
    runs, versions = runs_and_versions(project, "grpo")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and len(versions) == 1
    grpo_two = pd.read_csv(project / "data/08_reporting/grpo_history.csv").dropna(subset=["lr"])
    assert len(grpo_two) == 3 and (grpo_two.rank_param_spread == 0).all()
    assert grpo_two.resample_rounds.sum() > 0  # difficult prompts were resampled
    assert (grpo_two.prompts_drawn >= 4).all()  # the global batch: 2 processes x 2 prompts

    # one process with the same global batch: the same learning rate at every step
    edit_params(project, "sft", batch_size=8)
    edit_params(project, "grpo", batch_size=4)
    _reset_mlflow_globals()
    run_pipeline(project, "sft")
    one = pd.read_csv(project / "data/08_reporting/sft_history.csv").dropna(subset=["loss"])
    assert one.lr.tolist() == pytest.approx(two.lr.tolist(), rel=1e-9)
    run_pipeline(project, "grpo")
    grpo_one = pd.read_csv(project / "data/08_reporting/grpo_history.csv").dropna(subset=["lr"])
    assert grpo_one.lr.tolist() == pytest.approx(grpo_two.lr.tolist(), rel=1e-9)
