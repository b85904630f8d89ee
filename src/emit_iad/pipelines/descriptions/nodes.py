"""Thin adapter between the catalog and :mod:`emit_iad.describe`."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.describe import DescribeConfig, synthesize_descriptions


def describe_objects(
    image_index: pd.DataFrame, descriptions: dict, openai_credentials: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Descriptions table, report of what could not be described, and usage metrics."""
    config = DescribeConfig.from_params(descriptions)

    def bar(items, total):
        return tqdm(items, total=total, desc=f"descriptions ({config.backend})", unit="req")

    outcome = synthesize_descriptions(image_index, config, openai_credentials, progress=bar)
    metrics = {k: {"value": v, "step": 0} for k, v in outcome.metrics().items()}
    return outcome.table, outcome.report, metrics


def preview_descriptions(descriptions: pd.DataFrame) -> pd.DataFrame:
    """The table as CSV for reading in the MLflow UI."""
    return descriptions
