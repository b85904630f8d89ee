"""Thin adapters between the catalog and :mod:`emit_iad.train.sft`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from emit_iad.pipelines.training import loop_settings
from emit_iad.train.sft import SFTConfig, train_sft
from emit_iad.train.world import is_main_process
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.registry import provenance, register_stage


def train(base_model: VLM, train_questions: pd.DataFrame, val_questions: pd.DataFrame, sft: dict):
    """EMIT's stage 1 on the guarded question sets: the trained model (its meta says what
    trained on what), the per-step history and its curves."""
    settings, checkpoint_dir = loop_settings(sft, "sft")
    config = SFTConfig.from_params(settings)

    def bar(total, done):
        return tqdm(total=total, initial=done, desc="sft", unit="step",
                    disable=not is_main_process())  # one bar per launch

    model, history = train_sft(
        base_model,
        train_questions,
        val_questions,
        config,
        checkpoint_dir,
        bar,
    )
    model.meta.update(
        stage="sft",
        tasks=list(config.tasks),
        trainable=list(config.trainable),
        answer_format=config.answer_format,
        **provenance(train_questions),
    )
    return model, history, curves(history, "SFT")


def curves(history: pd.DataFrame, title: str) -> plt.Figure:
    """Loss per step and validation accuracy per epoch."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = history.dropna(subset=["loss"]) if "loss" in history else history.iloc[:0]
    a.plot(steps.step, steps.loss)
    a.set(xlabel="step", ylabel="loss", title=f"{title} loss")
    for col in [c for c in history.columns if c.startswith("val/")]:
        v = history.dropna(subset=[col])
        b.plot(v.step, v[col], marker="o", label=col[4:])
    b.set(xlabel="step", ylabel="%", title=f"{title} validation", ylim=(0, 100))
    if b.lines:
        b.legend(fontsize=7)
    fig.tight_layout()
    return fig


def register(sft_model: VLM, sft_history: pd.DataFrame) -> dict:
    """Register the model as ``emit-iad-sft``."""
    base = sft_model.meta.get("base_model") or "the tiny InternVL"
    return register_stage(
        sft_model, sft_history, "emit-iad-sft", f"emit-iad SFT warm-up (EMIT stage 1) from {base}"
    )
