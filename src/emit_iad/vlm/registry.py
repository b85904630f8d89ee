"""Models in the MLflow registry: a pyfunc that carries the emit-iad model directory.

``mlflow.pyfunc.load_model("models:/emit-iad-sft@champion")`` answers question records; the
evaluation stage downloads the directory from the same URI and loads it natively.
"""

from __future__ import annotations

import re
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd

from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.loading import load_vlm


class EMITPyfunc(mlflow.pyfunc.PythonModel):
    """Answers MMAD question records (columns of the question tables) with MMAD's protocol."""

    def load_context(self, context) -> None:
        self.vlm = load_vlm(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> list[str]:
        from emit_iad.vlm.answering import LocalAnswerer
        from emit_iad.vlm.chat import PromptConfig

        prompt = PromptConfig(**(params or {}).get("prompt", {}))
        answerer = LocalAnswerer(self.vlm, prompt)  # its default batch size
        records = [r for _, r in model_input.iterrows()]
        n = answerer.batch_size
        return [t for i in range(0, len(records), n) for t in answerer.answer(records[i : i + n])]


# What loading the pyfunc imports. Written out rather than inferred: MLflow's inference starts a
# process that imports the model (16 s a registration here) and, finding torch only behind
# emit-iad, left torch and transformers out of requirements.txt.
SERVING_PACKAGES = ("emit-iad", "mlflow", "cloudpickle", "numpy", "pandas", "pillow", "torch",
                    "transformers", "peft", "accelerate", "safetensors")  # fmt: skip


def serving_requirements() -> list[str]:
    """``name==version`` of each installed serving package: the model's ``requirements.txt``.

    >>> any(r.startswith("mlflow==") for r in serving_requirements())
    True
    """
    out = []
    for name in SERVING_PACKAGES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return out


def register_vlm(vlm: VLM, name: str, description: str, alias: str | None = None) -> str:
    """Log the model directory as a pyfunc in the active run and register a version of
    ``name``; returns the version. Without an active run nothing is logged."""
    run = mlflow.active_run()
    if run is None:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model_dir"
        vlm.save(folder)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=EMITPyfunc(),
            artifacts={"model_dir": str(folder)},
            pip_requirements=serving_requirements(),
        )
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    client.update_model_version(name, version.version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def provenance(train_questions: pd.DataFrame) -> dict:
    """What a trained model's meta records of where it came from: the MLflow run it was trained
    in (the evaluation stage finds its registered version by it) and its training data."""
    run = mlflow.active_run()
    data = train_questions
    datasets = sorted(data["dataset"].dropna().unique()) if "dataset" in data else []
    objects = sorted(data["object"].dropna().unique()) if "object" in data else []
    return {
        "mlflow_run_id": run.info.run_id if run else None,
        "data": f"{len(data)} questions of {', '.join(datasets) or 'unnamed data'} "
        f"({', '.join(objects)})",
    }


def register_stage(vlm: VLM, history, name: str, summary: str) -> dict:
    """Register a trained stage with a description of its data, stage and validation score;
    returns the version as a metric for the stage's MLflow run."""
    score = ""
    if "val/accuracy" in history and history["val/accuracy"].notna().any():
        score = f"; val accuracy {history['val/accuracy'].dropna().iloc[-1]:.1f}%"
    tasks = vlm.meta.get("tasks")
    data = f", trained on {vlm.meta['data']}" if vlm.meta.get("data") else ""
    description = f"{summary} on tasks {tasks}{data}, trainable {vlm.meta.get('trainable')}{score}"
    version = register_vlm(vlm, name, description)
    return {"registered_version": {"value": float(version or 0), "step": 0}}


def alias_for(benchmark: str) -> str:
    """The per-benchmark champion alias (MLflow allows letters, digits, ``_`` and ``-``)."""
    return "champion-" + re.sub(r"[^A-Za-z0-9_-]", "-", benchmark)


def promote(name: str, run_id: str | None, average: float, benchmark: str,
            move_alias: bool = True) -> dict | None:  # fmt: skip
    """Record an MMAD average on the version of ``name`` registered by run ``run_id`` (tags
    and description) and point the champion aliases at the best-scoring version *on this
    benchmark*: ``champion-<benchmark>``, and ``champion`` (versions scored on other benchmarks
    are not compared). ``move_alias`` false (a ``dvc exp run``): the score is recorded, no
    alias moves.

    Returns {version, champion, champion_average}, or None when no such version exists (the
    model was trained outside a tracked run, or the registry was reset).
    """
    if not run_id:
        return None
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return None
    mine = [v for v in versions if v.run_id == run_id]
    if not mine:
        return None
    version = max(mine, key=lambda v: int(v.version))
    key = f"mmad_average.{benchmark}"
    client.set_model_version_tag(name, version.version, "mmad_average", f"{average:.2f}")
    client.set_model_version_tag(name, version.version, key, f"{average:.2f}")
    client.set_model_version_tag(name, version.version, "mmad_benchmark", benchmark)
    described = (version.description or "").split(" | MMAD")[0]
    client.update_model_version(
        name,
        version.version,
        description=f"{described} | MMAD average {average:.1f} on {benchmark}",
    )
    scores = {int(v.version): float(v.tags[key]) for v in versions
              if key in v.tags and v.version != version.version}  # fmt: skip
    scores[int(version.version)] = average
    best = max(scores, key=lambda v: (scores[v], v))  # ties: the newer version
    if move_alias:
        client.set_registered_model_alias(name, alias_for(benchmark), str(best))
        client.set_registered_model_alias(name, "champion", str(best))
    return {"version": int(version.version), "champion": best, "champion_average": scores[best]}
