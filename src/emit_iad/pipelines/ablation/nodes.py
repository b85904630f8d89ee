"""Thin adapters between the catalog and :mod:`emit_iad.evaluate.ablation`."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.evaluate.ablation import (
    COLUMNS,
    AblationConfig,
    curves_figure,
    paper_table,
    run_ablation,
    to_markdown,
    training_summary,
)
from emit_iad.evaluate.report import radar_chart
from emit_iad.evaluate.runner import load_benchmark
from emit_iad.vlm.bundle import VLM

log = logging.getLogger(__name__)
FIXED = {"base": "Base", "sft": "SFT"}  # evaluation-stage models that head the table


def train_and_score(sft_model: VLM, train_questions: pd.DataFrame, val_questions: pd.DataFrame,
                    test_benchmark: dict, grpo: dict, evaluation: dict,
                    ablation: dict):  # fmt: skip
    config = AblationConfig.from_params(ablation)
    questions, _ = load_benchmark(test_benchmark["mmad_json"], test_benchmark["image_root"])

    def bar(variant, seed):
        return lambda total, done: tqdm(total=total, initial=done, desc=f"{variant} seed {seed}")

    def score_bar(items, total, variant, seed):
        return tqdm(items, total=total, desc=f"MMAD {variant} seed {seed}", unit="batch")

    return run_ablation(
        sft_model, train_questions, val_questions, questions,
        {k: v for k, v in grpo.items() if k != "checkpoint_dir"}, evaluation, config,
        grpo.get("checkpoint_dir", "data/06_models/.grpo_checkpoints") + "_ablation", bar,
        score_bar,
    )  # fmt: skip


def report(mmad_accuracy: pd.DataFrame, runs: pd.DataFrame, histories: pd.DataFrame):
    if "scoring" in mmad_accuracy:  # the evaluation's primary scoring mode (its rows come first)
        mmad_accuracy = mmad_accuracy[mmad_accuracy.scoring == mmad_accuracy.scoring.iloc[0]]
    averages = mmad_accuracy[mmad_accuracy.dataset == "Average"].set_index("model")
    fixed = {label: averages.loc[m, COLUMNS] for m, label in FIXED.items() if m in averages.index}
    table = paper_table(fixed, runs)
    summary = training_summary(histories)
    markdown = (
        "MMAD accuracy (%) on the test benchmark; GRPO rows: mean ± std over seeds\n\n"
        + to_markdown(table)
        + "\nGRPO training (means per run)\n\n"
        + to_markdown(summary.set_index("variant").round(3))
    )
    log.info("Ablation\n%s", markdown)
    means = dict(fixed)
    means |= {v: g[COLUMNS].mean() for v, g in runs.groupby("variant", sort=False)}
    radar = radar_chart(means, baselines=[])
    metrics = {}
    for variant, g in runs.groupby("variant", sort=False):
        key = variant.replace("SFT + ", "").replace(" ", "_").lower()
        metrics[f"ablation.{key}/average"] = g.Average.mean()
        metrics[f"ablation.{key}/anomaly_detection"] = g["Anomaly Detection"].mean()
        s = summary[summary.variant == variant]
        metrics[f"ablation.{key}/nonzero_advantage_share"] = s.nonzero_advantage_share.mean()
        metrics[f"ablation.{key}/accuracy_signal_share"] = s.accuracy_signal_share.mean()
        metrics[f"ablation.{key}/rollout_accuracy_first"] = s.rollout_accuracy_first.mean()
        for col in ("probe_accuracy_start", "probe_accuracy_end"):
            if col in s:
                metrics[f"ablation.{key}/{col}"] = s[col].mean()
        metrics[f"ablation.{key}/rollout_accuracy_last"] = s.rollout_accuracy_last.mean()
    dvc = {k.replace("ablation.", ""): round(float(v), 3) for k, v in metrics.items()}
    mlflow_metrics = {k: {"value": float(v), "step": 0} for k, v in metrics.items()}
    return (table.reset_index(), markdown, summary, radar, curves_figure(histories), dvc,
            mlflow_metrics)  # fmt: skip
