"""Thin adapters between the catalog and :mod:`emit_iad.train.grpo`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from tqdm.auto import tqdm

from emit_iad.pipelines.training import loop_settings
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.trainer import train_grpo
from emit_iad.train.world import is_main_process
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.registry import provenance, register_stage


def train(sft_model: VLM, train_questions: pd.DataFrame, val_questions: pd.DataFrame, grpo: dict):
    """EMIT's stage 2 from the SFT model: the trained model, the per-step history, sampled
    completions with their rewards, and the curves."""
    settings, checkpoint_dir = loop_settings(grpo, "grpo")
    config = GRPOConfig.from_params(settings)

    def bar(total, done):
        return tqdm(total=total, initial=done, desc="grpo", unit="step",
                    disable=not is_main_process())  # one bar per launch

    model, history, samples = train_grpo(
        sft_model, train_questions, val_questions, config, checkpoint_dir, bar,
    )  # fmt: skip
    model.meta.update(stage="grpo", tasks=list(config.tasks), trainable=list(config.trainable),
                      difficulty_aware=config.difficulty_aware, answer_format="think",
                      **provenance(train_questions))  # fmt: skip
    return model, history, pd.DataFrame(samples), curves(history)


def curves(history: pd.DataFrame) -> plt.Figure:
    """Accuracy reward, difficult share before/after resampling, KL per step."""
    steps = history.dropna(subset=["accuracy"]) if "accuracy" in history else history.iloc[:0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for ax, cols, title in (
        (axes[0], ["rollout_accuracy", "accuracy", "reward/accuracy"], "accuracy"),
        (axes[1], ["difficult_before", "difficult_after", "accuracy_signal_share"], "difficulty"),
        (axes[2], ["kl", "clip_fraction"], "KL / clipping"),
    ):
        for c in cols:
            if c in steps:
                ax.plot(steps.step, steps[c], label=c)
        ax.set(xlabel="step", title=f"GRPO {title}")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def register(grpo_model: VLM, grpo_history: pd.DataFrame) -> dict:
    """Register the model as ``emit-iad-grpo``."""
    aware = grpo_model.meta.get("difficulty_aware")
    return register_stage(
        grpo_model,
        grpo_history,
        "emit-iad-grpo",
        f"emit-iad GRPO (EMIT stage 2, difficulty_aware={aware}) from the SFT model",
    )
