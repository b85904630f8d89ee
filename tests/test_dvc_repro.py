"""`dvc repro` in a temporary git repo: the first runs the stages, the second runs nothing."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def sh(*cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_dvc_repro_twice_runs_nothing_the_second_time(project):
    assert shutil.which("dvc", path=str(BIN))
    sh("git", "init", "-q", cwd=project)
    first = sh("dvc", "repro", cwd=project)
    assert "Running stage 'ingestion'" in first
    assert "Running stage 'descriptions'" in first
    stages = ("ingestion", "descriptions", "qa", "model", "sft", "grpo", "evaluation")
    order = [first.index(f"Running stage '{stage}'") for stage in stages]  # the whole chain
    assert order == sorted(order)
    assert (project / "dvc.lock").is_file()
    index = pd.read_parquet(project / "data/02_intermediate/image_index.parquet")
    assert len(index) == 50

    second = sh("dvc", "repro", cwd=project)
    assert "Running stage" not in second
    assert "up to date" in second
    assert "Data and pipelines are up to date" in sh("dvc", "status", cwd=project)

    # a parameter of the second stage re-runs only that stage
    params = project / "conf/base/parameters_descriptions.yml"
    params.write_text(
        params.read_text().replace("instances_per_object: 6", "instances_per_object: 2")
    )
    third = sh("dvc", "repro", "qa", cwd=project)  # up to qa, to keep the test short
    assert "Running stage 'descriptions'" in third and "Running stage 'ingestion'" not in third
    assert "Running stage 'qa'" in third  # its input changed
    assert "grpo" in sh("dvc", "status", cwd=project)  # downstream is now stale
