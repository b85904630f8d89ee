"""README's figures that CI can reproduce, asserted with a tolerance: the raw heatmap's AUROC on
the offline default (the `model` stage on the fixed synthetic seed, full-size data)."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import PROJECT_ROOT, _reset_mlflow_globals, copy_project, edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


def readme_heatmap_figures() -> dict[str, float]:
    """The sentence of README that states them, parsed."""
    text = " ".join((PROJECT_ROOT / "README.md").read_text().split())
    m = re.search(r"image AUROC ([\d.]+), pixel AUROC ([\d.]+) with the untrained tiny vision "
                  r"tower \(\d+ test queries; per object ([^;)]*)[;)]", text)  # fmt: skip
    assert m, "README no longer states the heatmap AUROC"
    figures = {"image_auroc": float(m[1]), "pixel_auroc": float(m[2])}
    for part in m[3].split(","):
        name, value = part.split()
        figures[f"pixel_auroc.{name}"] = float(value)
    return figures


def test_the_heatmap_auroc_of_readme_on_the_default_seed(tmp_path, monkeypatch):
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
    figures = readme_heatmap_figures()
    assert len(figures) >= 3 and set(figures) <= set(measured)
    for name, stated in figures.items():  # README rounds to 2 decimals
        assert measured[name] == pytest.approx(stated, abs=0.006), name
