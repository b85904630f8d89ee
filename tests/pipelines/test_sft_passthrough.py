"""`sft.epochs: 0` (conf/qwen: AnomalyR1's GRPO starts from the Instruct model) passes the base
model on through the SFT stage unchanged, with a registered version and no training step."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from emit_iad.vlm.loading import load_vlm
from tests.conftest import edit_params
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


def test_sft_with_no_epochs_passes_the_base_model_on(project):
    edit_params(project, "sft", epochs=0)
    for stage in ("ingestion", "descriptions", "qa", "model", "sft"):
        run_pipeline(project, stage)
    base = load_vlm(project / "data/06_models/base")
    sft = load_vlm(project / "data/06_models/sft")
    for (name, a), (_, b) in zip(base.model.named_parameters(), sft.model.named_parameters(),
                                 strict=True):  # fmt: skip
        assert torch.equal(a, b), name
    assert sft.meta["stage"] == "sft"
    history = pd.read_csv(project / "data/08_reporting/sft_history.csv")
    assert "loss" not in history or history["loss"].isna().all()
