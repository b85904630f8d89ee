"""QA construction: MMAD-style questions for training, validation and a test benchmark."""

from emit_iad.pipelines.qa.pipeline import create_pipeline

__all__ = ["create_pipeline"]
