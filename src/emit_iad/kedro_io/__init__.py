"""Kedro datasets the project needs (the only library package besides pipelines/ that imports
Kedro)."""

from emit_iad.kedro_io.mmad_benchmark import MMADBenchmarkDataset
from emit_iad.kedro_io.vlm_directory import ModelFolderDataset, VLMDirectoryDataset

__all__ = ["MMADBenchmarkDataset", "ModelFolderDataset", "VLMDirectoryDataset"]
