"""Difficulty-aware GRPO (EMIT stage 2)."""

from emit_iad.pipelines.grpo.pipeline import create_pipeline

__all__ = ["create_pipeline"]
