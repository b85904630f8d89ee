"""Ingestion: dataset folders (or the synthetic generator) → image index."""

from emit_iad.pipelines.ingestion.pipeline import create_pipeline

__all__ = ["create_pipeline"]
