"""`descriptions` in a real Kedro session: offline default, and openai against a local server."""

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import edit_params
from tests.fake_openai import FakeOpenAI
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow
SECRET = "sk-proj-SECRET-do-not-log-4242"


def _runs(project):
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("emit-iad")
    runs = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    return client, {r.info.run_name: r for r in runs}  # the newest run of each name


def test_offline_default_writes_template_descriptions(project):
    run_pipeline(project, "ingestion")
    run_pipeline(project, "descriptions")
    table = pd.read_parquet(project / "data/03_primary/descriptions.parquet")
    assert set(table.kind) == {"normal", "defect", "instance"}
    assert (table.backend == "template").all()
    # tablet (normal-only): 2 imagined defective instances on its 3 training normals + 3 normal
    assert table.groupby("kind").size().to_dict() == {"defect": 19, "instance": 29, "normal": 5}
    tablet = table[(table.object == "tablet") & (table.kind == "instance")]
    assert tablet.image_path.str.contains("/train/good/").all()
    _, runs = _runs(project)
    run = runs["descriptions"]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["descriptions.rows.defect"] == 19
    # every effective setting is logged: conf/base's (by kedro-mlflow) and the typed defaults
    # conf/base leaves out (by StartupHook), each under the name kedro-mlflow gives
    assert run.data.params["descriptions.llm.max_requests"] == "2000"  # set by conf/base
    assert run.data.params["descriptions.llm.model"] == "gpt-4o"  # ClientConfig's default
    assert run.data.params["descriptions.llm.temperature"] == "0.2"
    assert "ingestion.workers" not in run.data.params  # a section this pipeline does not read
    effective = yaml.safe_load(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="params/effective.yml",
        tracking_uri=f"sqlite:///{project / 'mlflow.db'}")).read_text())  # fmt: skip
    assert set(effective) == {"descriptions"}
    assert effective["descriptions"]["llm"]["max_attempts"] == 3
    assert effective["descriptions"]["llm"]["max_requests"] == 2000


def test_openai_backend_with_credentials_never_leaks_the_key(project):
    (project / "conf/local/credentials.yml").write_text(f"openai:\n  api_key: {SECRET}\n")
    run_pipeline(project, "ingestion")
    with FakeOpenAI(fault_rate=0.2, seed=1, faults=("429", "500", "drop", "not_json")) as server:
        with (project / "conf/local/credentials.yml").open("a") as fh:
            fh.write(f"  base_url: {server.url}\n")
        edit_params(project, "descriptions", backend="openai", llm__timeout_s=2.0,
                    llm__cache_dir="data/cache/llm")  # fmt: skip
        run_pipeline(project, "descriptions")
        assert {r["auth"] for r in server.requests} == {f"Bearer {SECRET}"}
        sent = len(server.requests)
        run_pipeline(project, "descriptions")
        assert len(server.requests) == sent  # second run: everything from the cache

    table = pd.read_parquet(project / "data/03_primary/descriptions.parquet")
    assert len(table) == 53 and (table.backend == "openai").all()
    client, runs = _runs(project)
    run = client.get_run(runs["descriptions"].info.run_id)
    assert run.data.metrics["descriptions.llm.cache_hits"] == 53
    assert run.data.metrics["descriptions.llm.requests"] == 0

    leaks = [
        str(p) for p in project.rglob("*")
        if p.is_file() and "conf/local" not in str(p) and SECRET.encode() in p.read_bytes()
    ]  # fmt: skip
    assert leaks == [], f"API key found in {leaks}"
    assert any(p.name == "mlflow.db" for p in project.iterdir())  # the store was searched too
