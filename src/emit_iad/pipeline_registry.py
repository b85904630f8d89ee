"""Project pipelines: one per stage, found by ``find_pipelines``; ``__default__`` chains them."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# Stage order of the workflow (docs/DESIGN.md); stages not written yet are simply absent.
STAGES = ("ingestion", "descriptions", "qa", "model", "sft", "grpo", "evaluation", "ablation")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    stages = [pipelines[name] for name in STAGES if name in pipelines]
    pipelines["__default__"] = sum(stages, Pipeline([]))
    return pipelines
