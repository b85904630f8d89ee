"""Thin adapters between the catalog and :mod:`emit_iad.vlm`."""

from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.train.pretrain import PretrainConfig, pretrain_base
from emit_iad.vlm.build import ModelConfig, build_base_model, corpus
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.heatmap_eval import heatmap_sanity


def build_model(train_questions, val_questions, descriptions, model: dict):
    """The base model; the tiny one then gets its general warm-up (``model.pretrain``)."""
    config = ModelConfig.from_params(model)
    vlm = build_base_model(config, corpus(train_questions, val_questions, descriptions))
    settings = PretrainConfig.from_params(config.pretrain)
    if config.source != "tiny" or settings.epochs <= 0:
        return vlm, pd.DataFrame(columns=["step", "epoch", "loss"])

    def bar(total, done):
        return tqdm(total=total, initial=done, desc="base warm-up", unit="step")

    return pretrain_base(vlm, train_questions, val_questions, settings,
                         "data/06_models/.base_checkpoints", bar)


def check_heatmap(base_model: VLM, test_questions: pd.DataFrame, model: dict):
    """Image/pixel AUROC of the raw few-shot heatmap on the test queries (as MLflow metrics and
    as DVC metrics, ``heatmap.json``), and overlays."""
    config = ModelConfig.from_params(model)
    fs = config.fewshot_config() or (base_model.fewshot.config if base_model.fewshot else None)
    if fs is None:
        return {}, {}, None
    metrics, figure = heatmap_sanity(base_model, test_questions, fs, **config.sanity)
    dvc = {f"heatmap.{k}": round(float(v), 4) for k, v in metrics.items()}
    return {f"heatmap.{k}": {"value": v, "step": 0} for k, v in metrics.items()}, dvc, figure
