"""Published layouts through the Kedro chain, as a user runs it with ``source: pretrained``.

InternVL3-1B-hf and Qwen2.5-VL-3B (shrunk, random weights, tests/layouts.py) saved like hub
checkpoints; ``model → sft → grpo → evaluation`` in real Kedro sessions with conf/gpu's
mechanics (aligner + few-shot SFT in micro-batches with checkpointing, GRPO with LoRA on the
LLM and the ViT, saved deltas reloaded from the catalog), in fp32, then again in bf16.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from emit_iad.vlm.loading import load_vlm
from tests.conftest import edit_params
from tests.layouts import LAYOUTS
from tests.pipelines.test_ingestion_pipeline import run_pipeline

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_real_layout_runs_the_kedro_chain_in_fp32_and_bf16(layout, project, tmp_path):
    hub = tmp_path / layout
    LAYOUTS[layout](hub)
    qwen = layout.startswith("Qwen")
    for stage in ("ingestion", "descriptions", "qa"):
        run_pipeline(project, stage)
    edit_params(project, "model", source="pretrained", name_or_path=str(hub),
                fewshot__layers=[1, 2], fewshot__peak_token=False,
                fewshot__projector_mlp=False, sanity__max_images=4,
                images={"prompt": None if qwen else {"crop_to_patches": True,
                                                     "max_patches": 2}})  # fmt: skip
    edit_params(project, "sft", trainable=["aligner", "fewshot"], epochs=1, micro_batch_size=2,
                gradient_checkpointing=True, val_max_questions=2, val_max_new_tokens=4)  # fmt: skip
    edit_params(project, "grpo", trainable=["lora", "aligner", "fewshot"], steps=1,
                batch_size=1, group_size=2, max_new_tokens=6, micro_batch_size=1,
                gradient_checkpointing=True, lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                   "vision": True},
                val_max_questions=2, probe_prompts=0, val_max_new_tokens=4)  # fmt: skip
    edit_params(project, "evaluation", models=["sft", "grpo"], max_new_tokens=4, batch_size=4)
    for dtype in ("float32", "bfloat16"):
        edit_params(project, "model", dtype=dtype)
        edit_params(project, "evaluation", dtype=dtype)
        for stage in ("model", "sft", "grpo", "evaluation"):
            run_pipeline(project, stage)
        models = project / "data/06_models"
        for stage in ("base", "sft", "grpo"):
            files = {p.name for p in (models / stage).iterdir()}
            assert "model.safetensors" not in files, (stage, files)  # only what trained
            meta = json.loads((models / stage / "emit_iad.json").read_text())
            assert meta["base_model"] == str(hub)
        grpo = load_vlm(models / "grpo")
        assert next(grpo.model.parameters()).dtype == getattr(torch, dtype)
        tower = "visual" if qwen else "vision_tower"
        assert any(tower in n and "lora_" in n for n, _ in grpo.model.named_parameters())
        accuracy = pd.read_csv(project / "data/08_reporting/mmad_accuracy.csv")
        assert set(accuracy.model) == {"sft", "grpo"}, accuracy
