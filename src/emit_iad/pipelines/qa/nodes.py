"""Thin adapters between the catalog and :mod:`emit_iad.mmad`."""

from __future__ import annotations

import logging

import pandas as pd
from tqdm.auto import tqdm

from emit_iad.evaluate.config import scored_benchmark
from emit_iad.mmad.build import QAConfig, build_question_sets
from emit_iad.mmad.format import benchmark_files, to_mmad
from emit_iad.mmad.knowledge import as_domain_knowledge_json, knowledge_entries
from emit_iad.mmad.leakage import load_benchmark_images, scored_benchmarks
from emit_iad.mmad.summary import question_chart, question_summary

log = logging.getLogger(__name__)


def build_questions(image_index: pd.DataFrame, descriptions: pd.DataFrame, qa: dict,
                    evaluation: dict | None = None):  # fmt: skip
    """Train / val question tables, the test benchmark (mmad.json + files) and the skip report.

    The images of the benchmark the evaluation stage scores (``evaluation.mmad_json``) and of
    ``qa.exclude_benchmarks`` are left out of every question set (listed in the report)."""
    config = QAConfig.from_params(qa)
    mmad_json, image_root = scored_benchmark(evaluation)

    def bar(items, total, desc="templates", unit="object"):
        return tqdm(items, total=total, desc=desc, unit=unit)

    refs = scored_benchmarks(mmad_json, image_root, config.exclude_benchmarks)
    benchmarks = [load_benchmark_images(r, progress=lambda it, n, r=r: bar(
        it, n, f"digest {r.mmad_json}", "img")) for r in refs]  # fmt: skip
    sets = build_question_sets(image_index, descriptions, config, bar, benchmarks)
    test = sets.split("test")
    mmad = to_mmad(test, sets.template_keys)
    knowledge = as_domain_knowledge_json(knowledge_entries(descriptions),
                                         zip(test.dataset, test.object, strict=True))  # fmt: skip
    benchmark = {"mmad": mmad, "files": benchmark_files(test, mmad, sets.template_keys),
                 "domain_knowledge": knowledge}  # fmt: skip
    log.info("Questions: %s", sets.questions.groupby("split").size().to_dict())
    return sets.split("train"), sets.split("val"), test, benchmark, sets.report


def summarize_questions(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame):
    """Counts per split, type and answer letter, their chart, and the counts as metrics."""
    summary = question_summary(pd.concat([train, val, test]))
    metrics = {
        f"{split}.{kind}": {"value": float(v), "step": 0}
        for split, frame in (("train", train), ("val", val), ("test", test))
        for kind, v in (("questions", len(frame)), ("images", frame.query_key.nunique()))
    }
    return summary, question_chart(summary), metrics
