"""Shared fixtures: a throw-away copy of the project for end-to-end runs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

# before anything imports huggingface_hub, which reads these once
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests build what they need; nothing is downloaded
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_COPIED = ["conf/base", "conf/gpu", "conf/qwen", "conf/logging.yml", "src", "pyproject.toml", "dvc.yaml", ".dvc/config",
           ".telemetry", ".gitignore"]  # fmt: skip


def copy_project(dest: Path) -> Path:
    """Copy what a Kedro/DVC run needs (no data, no stores) into ``dest``."""
    for rel in _COPIED:
        src = PROJECT_ROOT / rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    (dest / "conf/local").mkdir(parents=True, exist_ok=True)
    for layer in (PROJECT_ROOT / "data").iterdir():
        if layer.is_dir():
            (dest / "data" / layer.name).mkdir(parents=True, exist_ok=True)
    return dest


def edit_params(project: Path, stage: str, **changes) -> None:
    """Set ``<stage>.<dotted.key>`` values in the copy's ``parameters_<stage>.yml``."""
    path = project / f"conf/base/parameters_{stage}.yml"
    params = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = params[stage]
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


SMALL_SYNTHETIC = {
    "synthetic__n_train_good": 3,
    "synthetic__n_test_good": 2,
    "synthetic__n_test_per_defect": 2,
    "synthetic__image_size": 64,
}


def _reset_mlflow_globals() -> None:
    """Forget the experiment and run a previous in-process Kedro session left active."""
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run():
        mlflow.end_run()
    fluent._active_experiment_id = None
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        os.environ.pop(var, None)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A small copy of the project as the working directory, with its own sqlite MLflow store.

    The store's URI is made absolute: mlflow caches stores by URI, so the relative
    ``sqlite:///mlflow.db`` of two copies would share one store within a test process.
    """
    dest = small_project(tmp_path / "project")
    monkeypatch.chdir(dest)
    _reset_mlflow_globals()
    yield dest
    _reset_mlflow_globals()


def small_project(dest: Path) -> Path:
    """A copy of the project with small data and budgets and an absolute sqlite store URI."""
    dest = copy_project(dest)
    edit_params(dest, "ingestion", **SMALL_SYNTHETIC)
    # small training and evaluation budgets: the tests check the wiring, not the learning
    edit_params(dest, "sft", epochs=2, batch_size=8, val_max_questions=8)
    edit_params(
        dest,
        "grpo",
        steps=2,
        batch_size=2,
        group_size=4,
        max_new_tokens=16,
        val_max_questions=8,
        checkpoint_every=1,
    )
    edit_params(dest, "evaluation", max_new_tokens=8)
    edit_params(dest, "ablation", seeds=[0], grpo={"steps": 2})
    mlflow_yml = dest / "conf/base/mlflow.yml"
    mlflow_yml.write_text(
        mlflow_yml.read_text().replace("sqlite:///mlflow.db", f"sqlite:///{dest / 'mlflow.db'}")
    )
    return dest


@pytest.fixture(scope="session")
def sets(tmp_path_factory):
    """(image index, descriptions, question sets) on a small synthetic dataset, built once."""
    from emit_iad.describe import DescribeConfig, synthesize_descriptions
    from emit_iad.mmad.build import QAConfig, build_question_sets
    from emit_iad.sources import (
        SourceConfig,
        SyntheticConfig,
        build_image_index,
        write_synthetic_dataset,
    )

    root = tmp_path_factory.mktemp("qa") / "synthetic"
    config = SyntheticConfig(image_size=64, n_train_good=8, n_test_good=4, n_test_per_defect=4)
    write_synthetic_dataset(root, config)
    index, _ = build_image_index([SourceConfig("synthetic", "synthetic", str(root))])
    desc = synthesize_descriptions(index, DescribeConfig(instances_per_object=8)).table
    return index, desc, build_question_sets(index, desc, QAConfig(text_query_share=0.2))


TEXTS = [
    "Is there any defect in the object? Yes. No. There is a defect in the object.",
    "What is the type of the defect? Scratch. Crack. Hole. Where is the defect? Top left.",
    "<think>The query differs from the template at the top left.</think><answer>A</answer>",
] * 20


@pytest.fixture(scope="session")
def tiny_vlm():
    """A tiny InternVL with EMIT's few-shot module, built from a config (untrained)."""
    from emit_iad.vlm.bundle import VLM
    from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
    from emit_iad.vlm.tiny import TinyModelConfig, build_tiny_model

    config = TinyModelConfig(vocab_size=600)
    model, processor = build_tiny_model(TEXTS, config)
    return VLM(model, processor, FewShotModule(config.hidden_size, FewShotConfig(layers=(0, 1, 2))),
               {"stage": "base", "base_model": None})  # fmt: skip


@pytest.fixture(scope="session")
def records(sets):
    _, _, qa = sets
    test = qa.split("test")
    types = ["Anomaly Detection", "Defect Classification", "Defect Localization", "Object Details"]
    return [r for _, r in test[test.type.isin(types)].head(8).iterrows()]
