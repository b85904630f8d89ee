"""Descriptions: normal, defect and instance texts per object (GPT, template or MMAD)."""

from emit_iad.pipelines.descriptions.pipeline import create_pipeline

__all__ = ["create_pipeline"]
