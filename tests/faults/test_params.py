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
