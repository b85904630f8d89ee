"""Committed figures that CI can reproduce: the raw heatmap's AUROC on the offline default (the
`model` stage on the fixed synthetic seed, full-size data), as the last `dvc repro` wrote it to
`data/08_reporting/heatmap.json` (DVC metrics), which docs/stages.md quotes."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT, _reset_mlflow_globals, copy_project, edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


def committed_heatmap_figures() -> dict[str, float]:
    """The model stage's DVC metrics, as committed with dvc.lock."""
    figures = json.loads((PROJECT_ROOT / "data/08_reporting/heatmap.json").read_text())
    return {k.removeprefix("heatmap."): v for k, v in figures.items()}


def test_the_committed_heatmap_auroc_on_the_default_seed(tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")  # the offline default's parameters, except:
    # no warm-up of the base, which trains the text model only: the heatmap reads the vision
    # tower, the same with or without it
    edit_params(project, "model", pretrain__epochs=0)
    mlflow_yml = project / "conf/base/mlflow.yml"
    mlflow_yml.write_text(mlflow_yml.read_text().replace(
        "sqlite:///mlflow.db", f"sqlite:///{project / 'mlflow.db'}"))  # fmt: skip
    monkeypatch.chdir(project)
    try:
        for stage in ("ingestion", "descriptions", "qa", "model"):
            run_pipeline(project, stage)
    finally:
        _reset_mlflow_globals()
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    [run] = [r for r in client.search_runs([client.get_experiment_by_name("emit-iad")
             .experiment_id]) if r.info.run_name == "model"]  # fmt: skip
    measured = {k.removeprefix("model.heatmap."): v for k, v in run.data.metrics.items()
                if k.startswith("model.heatmap.")}  # fmt: skip
    figures = committed_heatmap_figures()
    assert {"image_auroc", "pixel_auroc"} <= set(figures) and set(figures) == set(measured)
    for name, stated in figures.items():  # heatmap.json rounds to 4 decimals
        assert measured[name] == pytest.approx(stated, abs=6e-5), name
