"""Run models (local, MLflow URI, OpenAI-compatible) over MMAD-format benchmarks; reports."""

from emit_iad.evaluate.evaluate import Evaluation, dvc_metrics, evaluate_models, per_question

__all__ = ["Evaluation", "dvc_metrics", "evaluate_models", "per_question"]
