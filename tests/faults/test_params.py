"""Fault suite, parameters (issue #17, item 6): every stage's parameters are checked before the
first node runs; unknown keys and wrong types are named with the file that set them (base,
environment, local or the command line), with the nearest valid name."""

from __future__ import annotations

import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from emit_iad.params import ParamError
from tests.conftest import _reset_mlflow_globals

pytestmark = pytest.mark.slow


def run(project, pipeline, env=None, runtime_params=None):
    _reset_mlflow_globals()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env,
                             runtime_params=runtime_params) as session:  # fmt: skip
        return session.run(pipeline_name=pipeline)


def write_local(project, text):
    (project / "conf/local/parameters.yml").write_text(text)


@pytest.mark.parametrize(("where", "says"), [
    ("local", r"evaluation\.max_new_token: unknown setting\(s\) \['max_new_token'\] \(did you "
              r"mean 'max_new_tokens'\?\).*\(set in conf/local/parameters\.yml\)"),
    ("base", r"evaluation\.max_new_token: .*\(set in conf/base/parameters_evaluation\.yml\)"),
    ("cli", r"evaluation\.max_new_token: .*\(set in the command line \(--params\)\)"),
])  # fmt: skip
def test_an_unknown_key_names_the_file_that_set_it(project, where, says):
    runtime = None
    if where == "local":
        write_local(project, "evaluation:\n  max_new_token: 64\n")
    elif where == "base":
        path = project / "conf/base/parameters_evaluation.yml"
        data = yaml.safe_load(path.read_text())
        data["evaluation"]["max_new_token"] = 64
        path.write_text(yaml.safe_dump(data))
    else:
        runtime = {"evaluation": {"max_new_token": 64}}  # as the CLI parses it
    with pytest.raises(ParamError, match=says):
        run(project, "evaluation", runtime_params=runtime)


@pytest.mark.parametrize(("text", "says"), [
    ("sft:\n  lr: abc\n", r"sft\.lr: 'abc' is not a number \(set in conf/local"),
    ("grpo:\n  group_size: eight\n", r"grpo\.group_size: 'eight' is not an integer"),
    ("ingestion:\n  on_eror: skip\n", r"ingestion\.on_eror: .*did you mean 'on_error'"),
    ("evaluation:\n  scoring: lenient\n", r"evaluation\.scoring: 'lenient' is not one of"),
    # issue #27: values once accepted, or refused only after the model load by torch
    ("grpo:\n  steps: -5\n", r"grpo\.steps: -5 must be >= 1 \(set in conf/local/parameters"),
    ("grpo:\n  lr: -1\n", r"grpo\.lr: -1 must be > 0"),
    ("sft:\n  batch_size: 0\n", r"sft\.batch_size: 0 must be >= 1"),
    ("evaluation:\n  batch_size: 0\n", r"evaluation\.batch_size: 0 must be >= 1"),
    ("evaluation:\n  max_new_tokens: 0\n", r"evaluation\.max_new_tokens: 0 must be >= 1"),
    ("model:\n  dtype: float8\n", r"model\.dtype: 'float8' is not one of \['auto'"),
    ("evaluation:\n  device: cuda\n", r"evaluation\.device: 'cuda', but this machine has no GPU"),
    ("ingestoin:\n  on_error: skip\n", r"ingestoin: unknown section \(did you mean 'ingestion'"),
    ("qa:\n  split: {train: 0.6, val: 0.3, test: 0.25}\n", r"qa\.split: .* sum to 1"),
])  # fmt: skip
def test_bad_values_stop_the_run_before_any_node_and_any_mlflow_run(project, text, says):
    write_local(project, text)
    with pytest.raises(ParamError, match=says):
        run(project, "__default__")
    assert not (project / "data/01_raw/synthetic").exists()  # ingestion never ran
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emit-iad")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert runs == []  # no MLflow run was opened (none left RUNNING)


def test_an_environment_file_is_named(project):
    path = project / "conf/gpu/parameters_sft.yml"
    path.write_text(path.read_text().replace("sft:\n", "sft:\n  epoch: 3\n", 1))
    with pytest.raises(ParamError, match=r"sft\.epoch: .*'epochs'.*\(set in conf/gpu/parameters_sft"):
        run(project, "sft", env="gpu")


def test_all_problems_come_in_one_message_and_a_section_the_pipeline_does_not_read_counts(project):
    write_local(project, "grpo:\n  steps: -5\n  lr: -1\ningestoin:\n  on_error: skip\n")
    with pytest.raises(ParamError) as info:
        run(project, "ingestion")  # reads neither grpo nor the misspelt section
    message = str(info.value)
    assert all(k in message for k in ("grpo.steps: -5", "grpo.lr: -1", "ingestoin: unknown"))


def test_an_environment_that_does_not_exist_is_named_with_the_ones_that_do(project):
    with pytest.raises(ValueError, match=r"--env nope: there is no .*conf/nope; the environments "
                                         r"are \['gpu', 'local', 'qwen'\]"):
        run(project, "ingestion", env="nope")


def test_a_duplicate_yaml_key_names_its_file_and_line(project):
    """Issue #27: PyYAML said `in "<file>"`."""
    write_local(project, "sft:\n  lr: 0.001\n  lr: 0.002\n")
    with pytest.raises(ValueError, match=r"conf/local/parameters\.yml: found duplicate key lr "
                                         r"\(line 3\)"):
        run(project, "ingestion")


def test_dvc_params_stage_checks_every_section_before_the_first_stage(project):
    """`dvc repro`'s first stage runs the typed configs of all stages: a typo in the last
    stage's section stops the chain before ingestion."""
    import subprocess
    import sys

    write_local(project, "ablation:\n  seedz: [0]\n")
    done = subprocess.run([sys.executable, "-m", "emit_iad.dvc_params", "conf/resolved"],
                          cwd=project, capture_output=True, text=True)  # fmt: skip
    assert done.returncode != 0
    assert "ablation.seedz: unknown setting(s) ['seedz'] (did you mean 'seeds'?)" in done.stderr
    assert "conf/local/parameters.yml" in done.stderr
