"""Thin adapters between the catalog and :mod:`emit_iad.mmad`."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.mmad.build import QAConfig, build_question_sets
from emit_iad.mmad.format import benchmark_files, to_mmad
from emit_iad.mmad.summary import question_chart, question_summary

log = logging.getLogger(__name__)


def build_questions(image_index: pd.DataFrame, descriptions: pd.DataFrame, qa: dict):
    """Train / val question tables, the test benchmark (mmad.json + files) and the skip report."""
    config = QAConfig.from_params(qa)

    def bar(items, total):
        return tqdm(items, total=total, desc="templates", unit="object")

    sets = build_question_sets(image_index, descriptions, config, progress=bar)
    test = sets.split("test")
    mmad = to_mmad(test, sets.template_keys)
    benchmark = {"mmad": mmad, "files": benchmark_files(test, mmad, sets.template_keys)}
    log.info("Questions: %s", sets.questions.groupby("split").size().to_dict())
    return sets.split("train"), sets.split("val"), test, benchmark, sets.report


def summarize_questions(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame):
    summary = question_summary(pd.concat([train, val, test]))
    metrics = {
        f"{split}.{kind}": {"value": float(v), "step": 0}
        for split, frame in (("train", train), ("val", val), ("test", test))
        for kind, v in (("questions", len(frame)), ("images", frame.query_key.nunique()))
    }
    return summary, question_chart(summary), metrics
