"""The champion aliases: the evaluation stage points them at the best MMAD average so far on
the benchmark it scored (``champion-<benchmark>`` and ``champion``)."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from emit_iad.vlm.registry import promote, provenance

NAME = "emit-iad-grpo"


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("emit-iad-test")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def new_version(client, description: str = "GRPO on tasks [...]") -> str:
    """A registered version made by a run of its own; returns that run's id."""
    with mlflow.start_run() as run:
        mlflow.log_text("weights", "model/weights.txt")
    if not client.search_registered_models(f"name = '{NAME}'"):
        client.create_registered_model(NAME)
    client.create_model_version(
        NAME, f"runs:/{run.info.run_id}/model", run.info.run_id, description=description
    )
    return run.info.run_id


def test_champion_follows_the_best_average_so_far(client):
    r1, r2, r3 = new_version(client), new_version(client), new_version(client)
    assert promote(NAME, r1, 40.0, "test_benchmark") == {
        "version": 1,
        "champion": 1,
        "champion_average": 40.0,
    }
    assert promote(NAME, r2, 55.5, "test_benchmark")["champion"] == 2
    assert promote(NAME, r3, 47.0, "test_benchmark")["champion"] == 2  # worse: no move
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 2
    v3 = client.get_model_version(NAME, "3")
    assert v3.tags["mmad_average"] == "47.00" and v3.tags["mmad_benchmark"] == "test_benchmark"
    assert v3.description == "GRPO on tasks [...] | MMAD average 47.0 on test_benchmark"
    # re-scoring replaces the score in the description instead of appending a second one
    assert promote(NAME, r3, 60.0, "test_benchmark")["champion"] == 3
    assert client.get_model_version(NAME, "3").description.count("MMAD") == 1


def alias(client, name):
    return int(client.get_model_version_by_alias(NAME, name).version)


def test_champions_compare_within_one_benchmark_and_experiments_move_none(client):
    r1, r2, r3 = new_version(client), new_version(client), new_version(client)
    promote(NAME, r1, 70.0, "synthetic-aaaa1111")
    # a lower score on the real benchmark is not beaten by the synthetic 70
    assert promote(NAME, r2, 45.0, "MMAD-bbbb2222")["champion"] == 2
    assert alias(client, "champion-synthetic-aaaa1111") == 1
    assert alias(client, "champion-MMAD-bbbb2222") == 2 and alias(client, "champion") == 2
    v1 = client.get_model_version(NAME, "1")
    assert v1.tags["mmad_average.synthetic-aaaa1111"] == "70.00"
    assert "mmad_average.MMAD-bbbb2222" not in v1.tags
    # an experiment (move_alias false) records its score, moves nothing
    out = promote(NAME, r3, 90.0, "MMAD-bbbb2222", move_alias=False)
    assert out["champion"] == 3 and alias(client, "champion-MMAD-bbbb2222") == 2
    assert client.get_model_version(NAME, "3").tags["mmad_average.MMAD-bbbb2222"] == "90.00"


def test_no_version_from_that_run_means_no_alias(client):
    new_version(client)
    assert promote(NAME, "0" * 32, 50.0, "b") is None
    assert promote(NAME, None, 50.0, "b") is None
    assert promote("emit-iad-never-registered", "0" * 32, 50.0, "b") is None
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias(NAME, "champion")


def test_provenance_names_the_run_and_the_data(client):
    questions = pd.DataFrame({"dataset": ["synthetic"] * 3, "object": ["wood", "screw", "wood"]})
    assert provenance(questions)["mlflow_run_id"] is None
    with mlflow.start_run() as run:
        meta = provenance(questions)
    assert meta == {
        "mlflow_run_id": run.info.run_id,
        "data": "3 questions of synthetic (screw, wood)",
    }


def test_registry_uris_name_what_exists(client):
    from emit_iad.evaluate.answerers import ModelLoadError, ModelSpec, check_spec

    promote(NAME, new_version(client), 50.0, "bench")  # sets champion, champion-bench
    check_spec(ModelSpec.parse(f"models:/{NAME}@champion"))
    check_spec(ModelSpec.parse(f"models:/{NAME}/1"))
    with pytest.raises(ModelLoadError, match=r"no alias 'champoin'; did you mean 'champion'\?"):
        check_spec(ModelSpec.parse(f"models:/{NAME}@champoin"))
    with pytest.raises(ModelLoadError, match=r"aliases: \['champion', 'champion-bench'\]"):
        check_spec(ModelSpec.parse(f"models:/{NAME}@nonexistent"))
    with pytest.raises(ModelLoadError, match=r"no registered model 'emit-iad-grp'; did you mean"):
        check_spec(ModelSpec.parse("models:/emit-iad-grp@champion"))
    with pytest.raises(ModelLoadError, match=r"no version 7 \(versions: \['1'\]\)"):
        check_spec(ModelSpec.parse(f"models:/{NAME}/7"))
