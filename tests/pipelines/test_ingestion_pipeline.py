"""A real Kedro session runs `ingestion` in a project copy, tracked in a sqlite MLflow store."""

import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.tracking import MlflowClient

from tests.conftest import _reset_mlflow_globals, edit_params
from tests.sources.test_layouts import write_image

pytestmark = pytest.mark.slow


def run_pipeline(project, name):
    """One `kedro run --pipelines=<name>`, in process (as if each were its own process)."""
    _reset_mlflow_globals()
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        return session.run(pipeline_name=name)


def test_ingestion_writes_the_index_and_a_finished_mlflow_run(project):
    run_pipeline(project, "ingestion")

    index = pd.read_parquet(project / "data/02_intermediate/image_index.parquet")
    # 5 objects x (3 train + 2 test good) + (4 + 4 + 4 + 3 + 4 defect types) x 2
    assert len(index) == 5 * 5 + 19 * 2
    assert index.is_anomalous.sum() == 38
    assert index.image_path.str.startswith("data/01_raw/synthetic/").all()
    assert (project / "data/08_reporting/ingestion_overview.png").stat().st_size > 10_000
    assert pd.read_csv(project / "data/08_reporting/ingestion_report.csv").empty

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("emit-iad")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "ingestion"
    assert run.data.metrics["ingestion.images"] == 63
    assert run.data.params["ingestion.synthetic.n_train_good"] == "3"  # flattened
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"ingestion_overview.png", "ingestion_report.csv"} <= artifacts


def test_bad_file_fails_the_run_without_writing_the_index(project):
    edit_params(project, "ingestion", sources=[
        {"name": "mv", "layout": "mvtec_ad", "root": "data/01_raw/mv"},
    ])  # fmt: skip
    broken = project / "data/01_raw/mv/bottle/train/good/000.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an image")
    with pytest.raises(Exception, match="cannot be decoded") as info:
        run_pipeline(project, "ingestion")
    assert "000.png" in str(info.value)
    assert not (project / "data/02_intermediate/image_index.parquet").exists()

    edit_params(project, "ingestion", on_error="skip")
    (project / "data/01_raw/mv/bottle/train/good/001.png").write_bytes(
        (project / "data/01_raw/mv/bottle/train/good/000.png").read_bytes()
    )
    write_image(project / "data/01_raw/mv/bottle/train/good/002.png")
    run_pipeline(project, "ingestion")
    report = pd.read_csv(project / "data/08_reporting/ingestion_report.csv")
    assert sorted(report.path.str.rsplit("/", n=1).str[-1]) == ["000.png", "001.png"]
    index = pd.read_parquet(project / "data/02_intermediate/image_index.parquet")
    assert index.image_path.tolist() == ["data/01_raw/mv/bottle/train/good/002.png"]
