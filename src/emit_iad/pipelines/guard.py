"""The training stages' start: refuse questions that show an image of a scored benchmark."""

from __future__ import annotations

import logging

import pandas as pd
from kedro.pipeline import Node

from emit_iad.evaluate.config import scored_benchmark
from emit_iad.mmad.build import QAConfig
from emit_iad.mmad.leakage import check_questions, load_benchmark_images, scored_benchmarks

log = logging.getLogger(__name__)


def guard_questions(
    train_questions: pd.DataFrame, val_questions: pd.DataFrame, test_benchmark: dict,
    evaluation: dict, qa: dict,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """The question sets unchanged, once no image of them is in a benchmark to be scored
    (``evaluation.mmad_json``, else the qa stage's test benchmark, and
    ``qa.exclude_benchmarks``); raises :class:`~emit_iad.mmad.leakage.BenchmarkLeak`."""
    mmad_json, image_root = scored_benchmark(evaluation)
    excluded = QAConfig.from_params(qa).exclude_benchmarks
    refs = scored_benchmarks(mmad_json, image_root, excluded, test_benchmark)
    benchmarks = [load_benchmark_images(r) for r in refs]
    checked = check_questions({"train": train_questions, "val": val_questions}, benchmarks)
    log.info("Benchmark guard: %d training images, none in %s", checked,
             ", ".join(b.name for b in benchmarks) or "no benchmark")  # fmt: skip
    return train_questions, val_questions


def guard_node(stage: str) -> Node:
    """The node a training stage starts with: the qa stage's question sets, checked, as
    ``<stage>_train_set`` and ``<stage>_val_set``."""
    return Node(
        func=guard_questions,
        inputs=[
            "train_questions",
            "val_questions",
            "test_benchmark",
            "params:evaluation",
            "params:qa",
        ],
        outputs=[f"{stage}_train_set", f"{stage}_val_set"],
        name=f"guard_{stage}_questions",
    )
