"""Thin adapters between the catalog and :mod:`emit_iad.experiments.ablation`."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.evaluate.report import radar_chart
from emit_iad.evaluate.runner import load_benchmark
from emit_iad.evaluate.stats import correct_matrix, step_intervals
from emit_iad.experiments.ablation import (
    COLUMNS,
    AblationConfig,
    curves_figure,
    paper_table,
    run_ablation,
    to_markdown,
    training_summary,
)
from emit_iad.mmad import protocol as p
from emit_iad.pipelines.training import loop_settings
from emit_iad.vlm.bundle import VLM

log = logging.getLogger(__name__)
FIXED = {"base": "Base", "sft": "SFT"}  # evaluation-stage models that head the table
# the steps of EMIT's ablation whose gains get an interval (from, to)
STEPS = [("Base", "SFT"), ("SFT", "SFT + GRPO"), ("SFT + GRPO", "SFT + DA-GRPO"),
         ("SFT + GRPO", "SFT + GRPO + resampling"), ("SFT + GRPO", "SFT + GRPO + reweighting"),
         ("SFT", "SFT + DA-GRPO")]  # fmt: skip


def train_and_score(sft_model: VLM, train_questions: pd.DataFrame, val_questions: pd.DataFrame,
                    test_benchmark: dict, grpo: dict, evaluation: dict,
                    ablation: dict):  # fmt: skip
    """Every variant with every seed from the SFT model, each scored on the test benchmark:
    the runs' scores, their training histories and every answer."""
    config = AblationConfig.from_params(ablation)
    settings, checkpoint_dir = loop_settings(grpo, "grpo")
    questions, _ = load_benchmark(test_benchmark["mmad_json"], test_benchmark["image_root"])

    def bar(variant, seed):
        return lambda total, done: tqdm(total=total, initial=done, desc=f"{variant} seed {seed}")

    def score_bar(items, total, variant, seed):
        return tqdm(items, total=total, desc=f"MMAD {variant} seed {seed}", unit="batch")

    return run_ablation(
        sft_model, train_questions, val_questions, questions,
        settings, evaluation, config, checkpoint_dir + "_ablation", bar, score_bar,
    )  # fmt: skip


def _metric_name(text: str) -> str:
    """A row label as an MLflow metric name: ``SFT + GRPO + resampling`` -> ``grpo_resampling``."""
    return text.replace("SFT + ", "").replace(" + ", "_").replace(" ", "_").lower()


def intervals(per_question: pd.DataFrame, answers: pd.DataFrame, holdout: list[str],
              n_boot: int = 2000) -> pd.DataFrame:  # fmt: skip
    """Each step's gain in MMAD average with its 95 % interval (paired bootstrap over questions
    and seeds), on the objects seen in training and on the held-out ones."""
    ids = sorted(answers.id.unique())
    kind = answers.drop_duplicates("id").set_index("id").question_type
    tasks = [p.TASK_OF_TYPE.get(kind[i], kind[i]) for i in ids]
    models = {label: correct_matrix(per_question[per_question.model == m], ids)
              for m, label in FIXED.items()
              if "id" in per_question and (per_question.model == m).any()}  # fmt: skip
    for variant, g in answers.groupby("variant", sort=False):
        models[variant] = correct_matrix(g, ids)
    # the object of each question, as its record gives it (an ID's shape depends on the layout)
    objects = answers.drop_duplicates("id").set_index("id")["object"].reindex(ids)
    held = objects.isin(holdout).to_numpy()
    groups = {"seen objects": ~held, "held-out objects": held}
    return pd.DataFrame(step_intervals(models, tasks, STEPS, groups, n_boot=n_boot),
                        columns=["questions", "from", "to", "difference", "low", "high", "runs",
                                 "met"])  # fmt: skip


def report(mmad_accuracy: pd.DataFrame, runs: pd.DataFrame, histories: pd.DataFrame,
           per_question: pd.DataFrame, answers: pd.DataFrame, qa: dict):  # fmt: skip
    """EMIT's ablation table beside the evaluation's base and SFT rows, the training summary,
    radar and curves, DVC metrics, and each step's gain with its interval on seen and held-out
    objects."""
    if "scoring" in mmad_accuracy:  # the evaluation's primary scoring mode (its rows come first)
        mmad_accuracy = mmad_accuracy[mmad_accuracy.scoring == mmad_accuracy.scoring.iloc[0]]
    averages = mmad_accuracy[mmad_accuracy.dataset == "Average"].set_index("model")
    fixed = {label: averages.loc[m, COLUMNS] for m, label in FIXED.items() if m in averages.index}
    table = paper_table(fixed, runs)
    summary = training_summary(histories)
    steps = intervals(per_question, answers, list(qa.get("holdout_objects") or []))
    shown = steps.assign(**{c: steps[c].round(1) for c in ("difference", "low", "high")})
    markdown = (
        "MMAD accuracy (%) on the test benchmark; GRPO rows: mean ± std over seeds\n\n"
        + to_markdown(table)
        + "\nGain of each step in MMAD average (points) with its 95 % interval (paired "
        "bootstrap over questions and seeds); met: at least 2 points and the interval above 0\n\n"
        + to_markdown(shown.set_index("questions"))
        + "\nGRPO training (means per run)\n\n"
        + to_markdown(summary.set_index("variant").round(3))
    )
    log.info("Ablation\n%s", markdown)
    means = dict(fixed)
    means |= {v: g[COLUMNS].mean() for v, g in runs.groupby("variant", sort=False)}
    radar = radar_chart(means, baselines=[])
    metrics = {}
    for variant, g in runs.groupby("variant", sort=False):
        key = _metric_name(variant)
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
    for r in steps.to_dict("records"):
        group = "heldout" if r["questions"].startswith("held") else "seen"
        name = _metric_name(f"{r['from']}_to_{r['to']}")
        metrics[f"ablation.gain.{group}/{name}"] = r["difference"]
    dvc = {k.replace("ablation.", ""): round(float(v), 3) for k, v in metrics.items()}
    mlflow_metrics = {k: {"value": float(v), "step": 0} for k, v in metrics.items()}
    return (table.reset_index(), markdown, summary, radar, curves_figure(histories), dvc,
            mlflow_metrics, steps)  # fmt: skip
