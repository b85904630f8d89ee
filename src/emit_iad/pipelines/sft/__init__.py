"""SFT warm-up (EMIT stage 1)."""

from emit_iad.pipelines.sft.pipeline import create_pipeline

__all__ = ["create_pipeline"]
