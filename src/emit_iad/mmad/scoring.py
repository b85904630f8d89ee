"""MMAD's scoring: accuracy per dataset and task, balanced Anomaly Detection, Object Analysis.

Anomaly Detection is balanced: (accuracy on images whose path contains ``good`` + accuracy on
the others) / 2. Object Structure and Object Details are pooled as Object Analysis. A dataset's
average is the mean of its task columns; the final average is the mean over datasets.
Overkill = 1 − accuracy on normal images, Miss = 1 − accuracy on anomalous ones (Anomaly
Detection questions). Accuracies are in percent, as MMAD reports them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emit_iad.mmad import protocol as p

ANSWER_KEYS = ("image", "question", "question_type", "correct_answer", "gpt_answer")


def _dataset(image: str) -> str:
    return image.split("/")[0] if "/" in image else ""


def score_answers(answers: pd.DataFrame) -> pd.DataFrame:
    """Accuracy table: rows = datasets + ``Average``; columns = the 7 tasks, ``Average``,
    ``Overkill``, ``Miss`` (percent). ``answers`` has MMAD's answer keys."""
    a = answers.assign(
        dataset=answers.image.map(_dataset),
        task=answers.question_type.map(p.TASK_OF_TYPE),
        correct=answers.gpt_answer == answers.correct_answer,
        normal=answers.image.str.contains("good"),
    )
    if a.task.isna().any():
        unknown = sorted(set(a.question_type[a.task.isna()]))
        raise ValueError(f"unknown question type(s) {unknown}; MMAD's are {list(p.QUESTION_TYPES)}")
    rows = {}
    for dataset, d in a.groupby("dataset", sort=True):
        row = {}
        for task in p.TASKS:
            t = d[d.task == task]
            if t.empty:
                continue
            if task == p.ANOMALY_DETECTION:
                good, bad = t[t.normal].correct.mean(), t[~t.normal].correct.mean()
                row[task] = 100 * np.nanmean([good, bad])
                row["Overkill"] = 100 * (1 - good) if not np.isnan(good) else np.nan
                row["Miss"] = 100 * (1 - bad) if not np.isnan(bad) else np.nan
            else:
                row[task] = 100 * t.correct.mean()
        row["Average"] = float(np.nanmean([row[t] for t in p.TASKS if t in row]))
        rows[dataset] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.reindex(columns=[*p.TASKS, "Average", "Overkill", "Miss"])
    table.loc["Average"] = table.mean(axis=0, skipna=True)
    return table


def score_reference(answers: list[dict]) -> dict[str, dict[str, float]]:
    """Slow, obvious version of :func:`score_answers` (plain loops), for tests."""
    out: dict[str, dict[str, float]] = {}
    datasets = sorted({_dataset(x["image"]) for x in answers})
    for ds in datasets:
        row = {}
        for task in p.TASKS:
            hits = {"good": [], "bad": [], "all": []}
            for x in answers:
                if _dataset(x["image"]) != ds or p.TASK_OF_TYPE[x["question_type"]] != task:
                    continue
                ok = x["gpt_answer"] == x["correct_answer"]
                hits["all"].append(ok)
                hits["good" if "good" in x["image"] else "bad"].append(ok)
            if not hits["all"]:
                continue
            if task == p.ANOMALY_DETECTION:
                parts = [sum(h) / len(h) for h in (hits["good"], hits["bad"]) if h]
                row[task] = 100 * sum(parts) / len(parts)
            else:
                row[task] = 100 * sum(hits["all"]) / len(hits["all"])
        row["Average"] = sum(row.values()) / len(row)
        out[ds] = row
    return out


def metrics_of(table: pd.DataFrame) -> dict[str, float]:
    """The ``Average`` row as flat metrics: ``average`` and one per task (snake_case)."""
    avg = table.loc["Average"]
    out = {"average": float(avg["Average"])}
    for task in p.TASKS:
        if not np.isnan(avg[task]):
            out[task.lower().replace(" ", "_")] = float(avg[task])
    return out
