"""Run models (local, MLflow URI, OpenAI-compatible) over MMAD-format benchmarks; reports.

The names below load on first use, so that ``emit_iad.evaluate.config`` (read by the qa stage
and the training guards) imports no torch."""

import importlib

__all__ = ["Evaluation", "dvc_metrics", "evaluate_models", "per_question"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("emit_iad.evaluate.evaluate"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
