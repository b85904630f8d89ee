"""The ablation stage: base, SFT, SFT + GRPO, SFT + difficulty-aware GRPO on one benchmark."""

from emit_iad.pipelines.ablation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
