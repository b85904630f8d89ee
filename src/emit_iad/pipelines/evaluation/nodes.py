"""Thin adapter between the catalog and :mod:`emit_iad.evaluate`."""

from __future__ import annotations

import os
from dataclasses import replace

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.evaluate import dvc_metrics, evaluate_models, per_question
from emit_iad.evaluate.config import evaluation_config
from emit_iad.evaluate.evaluate import promote_champions, resolve_specs
from emit_iad.evaluate.report import heat_table, radar_chart
from emit_iad.mmad.format import benchmark_id
from emit_iad.train.world import is_main_process


def evaluate(test_benchmark: dict, evaluation: dict, openai_credentials: dict,
             base_model: str, sft_model: str, grpo_model: str):  # fmt: skip
    """The stage models come as the catalog's folders (``<stage>_model@folder``)."""
    folders = {"base": base_model, "sft": sft_model, "grpo": grpo_model}
    config = evaluation_config(evaluation)
    mmad_json = config.mmad_json or test_benchmark["mmad_json"]
    image_root = config.image_root or test_benchmark["image_root"]
    if not config.mmad_json and not config.domain_knowledge_json:
        # the qa stage's benchmark carries its objects' knowledge (from the descriptions)
        config = replace(config, domain_knowledge_json=test_benchmark.get("domain_knowledge_json"))

    def bar(items, total, label):
        return tqdm(items, total=total, desc=f"MMAD {label}", unit="batch")

    result = evaluate_models(mmad_json, image_root, config, openai_credentials, bar, folders)
    accuracy = result.accuracy()
    metrics = result.metrics()
    primary = list(metrics)[-1]  # the last model listed (the newest stage)
    mlflow_metrics = {f"mmad/{k}": v for k, v in metrics[primary].items()}
    for model, values in metrics.items():
        mlflow_metrics.update({f"mmad.{model}/{k}": v for k, v in values.items()})
        mlflow_metrics[f"speed.{model}/questions_per_s"] = result.speed[model]["questions_per_s"]
    mlflow_metrics = {k: {"value": float(v), "step": 0} for k, v in mlflow_metrics.items()}
    radar = radar_chart({m: t.loc["Average"] for m, t in result.tables.items()},
                        config.baselines,
                        benchmark_id(mmad_json))  # fmt: skip
    primary = accuracy[accuracy.scoring == result.scoring].drop(columns="scoring")
    heat = heat_table(primary.set_index(["model", "dataset"]))
    report = pd.DataFrame(result.problems, columns=["entry", "reason"])
    return (result.answers, accuracy, dvc_metrics(result), mlflow_metrics, radar, heat,
            per_question(result), report)  # fmt: skip


def promote(mmad_metrics: dict, test_benchmark: dict, evaluation: dict,
            base_model: str, sft_model: str, grpo_model: str) -> dict:  # fmt: skip
    """The registry's champions from the *saved* metrics.json: this node runs only after the
    evaluation's outputs are written, so a failed run changes no tag or alias."""
    if not is_main_process():
        return {}
    folders = {"base": base_model, "sft": sft_model, "grpo": grpo_model}
    config = evaluation_config(evaluation)
    mmad_json = config.mmad_json or test_benchmark["mmad_json"]
    # a `dvc exp run` (DVC sets DVC_EXP_NAME) records its scores but moves no alias, unless asked
    experiment = bool(os.environ.get("DVC_EXP_NAME"))
    move = not experiment or config.promote_in_experiments
    averages = {m: v["average"] for m, v in mmad_metrics.items() if "average" in v}
    return promote_champions(resolve_specs(config, folders), averages,
                             benchmark_id(mmad_json), move)  # fmt: skip
