"""Model: build (or load) the base VLM with EMIT's few-shot module; heatmap sanity figures."""

from emit_iad.pipelines.model.pipeline import create_pipeline

__all__ = ["create_pipeline"]
