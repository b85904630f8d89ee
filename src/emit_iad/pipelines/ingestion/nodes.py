"""Thin adapters between the catalog and :mod:`emit_iad.sources`."""

from __future__ import annotations

import logging

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from emit_iad.sources import (
    SourceConfig,
    SyntheticConfig,
    build_image_index,
    write_synthetic_dataset,
)
from emit_iad.sources.overview import contact_sheet
from emit_iad.stage_params import IngestionConfig

log = logging.getLogger(__name__)


def generate_synthetic_data(ingestion: dict) -> pd.DataFrame:
    """Write the synthetic dataset for every source whose layout is ``synthetic``."""
    settings = IngestionConfig.from_params(ingestion)
    sources = [SourceConfig.from_params(s) for s in settings.sources]
    config = SyntheticConfig.from_params(settings.synthetic or {})
    frames, roots = [], set()
    for src in (s for s in sources if s.layout == "synthetic"):
        if src.root in roots:  # several sources may index parts of one generated folder
            continue
        roots.add(src.root)
        bar = lambda items, src=src: tqdm(items, desc=f"synthetic {src.root}", unit="img")  # noqa: E731
        rows = write_synthetic_dataset(src.root, config, progress=bar)
        frames.append(pd.DataFrame(rows).assign(dataset=src.name))
        log.info("Wrote %d synthetic images to %s", len(rows), src.root)
    cols = ["dataset", "object", "split", "label", "image_path", "mask_path"]
    return pd.concat(frames)[cols] if frames else pd.DataFrame(columns=cols)


def index_images(
    ingestion: dict, synthetic_manifest: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Build the image index of all sources (the manifest only orders this after generation)."""
    del synthetic_manifest
    config = IngestionConfig.from_params(ingestion)
    sources = [SourceConfig.from_params(s) for s in config.sources]

    def bar(items, total):
        return tqdm(items, total=total, desc="indexing", unit="img")

    index, report = build_image_index(
        sources,
        on_error=config.on_error,
        workers=config.workers,
        progress=bar,
    )
    if len(report):
        log.warning("Skipped %d file(s); see data/08_reporting/ingestion_report.csv", len(report))
    log.info("Indexed %d images (%d defective)", len(index), int(index.is_anomalous.sum()))
    return index, report


def summarize_index(
    image_index: pd.DataFrame, ingestion_report: pd.DataFrame
) -> tuple[dict, Figure]:
    """Counts for MLflow and a contact sheet of every object."""
    metrics = {
        "images": len(image_index),
        "defective": int(image_index.is_anomalous.sum()),
        "objects": image_index.groupby(["dataset", "object"]).ngroups,
        "defect_types": image_index[image_index.is_anomalous]
        .groupby(["dataset", "object", "label"])
        .ngroups,
        "skipped": len(ingestion_report),
    }
    metrics = {k: {"value": float(v), "step": 0} for k, v in metrics.items()}
    return metrics, contact_sheet(image_index)
