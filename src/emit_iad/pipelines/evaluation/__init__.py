"""Evaluation: MMAD protocol and scoring for every configured model."""

from emit_iad.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
