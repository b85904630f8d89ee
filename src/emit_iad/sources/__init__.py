"""Anomaly-dataset layouts → image records, and the synthetic industrial dataset."""

from emit_iad.sources.errors import IngestionError
from emit_iad.sources.index import SourceConfig, build_image_index
from emit_iad.sources.synthetic import SyntheticConfig, write_synthetic_dataset

__all__ = [
    "IngestionError",
    "SourceConfig",
    "SyntheticConfig",
    "build_image_index",
    "write_synthetic_dataset",
]
