"""MMAD's scoring: accuracy per dataset and task, balanced Anomaly Detection, Object Analysis.

Anomaly Detection is balanced: (accuracy on images whose path contains ``good`` + accuracy on
the others) / 2. Object Structure and Object Details are pooled as Object Analysis. A dataset's
average is the mean of its task columns; the final average is the mean over datasets.
Overkill = 1 − accuracy on normal images, Miss = 1 − accuracy on anomalous ones (Anomaly
Detection questions). Accuracies are in percent, as MMAD reports them.

Two modes for answers that name no letter A–E (``gpt_answer`` None or another string):

- ``mmad``: as MMAD's ``helper/summary.py``, with which the published numbers were computed. It
  removes such an answer from the list it is iterating over, so the answer right after each
  removed one is skipped too; neither is counted.
- ``strict``: every answer counts; an unreadable one is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emit_iad.mmad import protocol as p

ANSWER_KEYS = ("image", "question", "question_type", "correct_answer", "gpt_answer")
SCORING_MODES = ("mmad", "strict")
VALID = frozenset("ABCDE")


def other_mode(mode: str) -> str:
    """The scoring mode that is not ``mode`` (reports show both)."""
    return next(m for m in SCORING_MODES if m != mode)


def mmad_counted(letters) -> list[bool]:
    """Which answers MMAD's summary.py counts, in file order: an answer without a letter A–E is
    dropped, and so is the one after it (removing from a list while iterating over it moves
    the next item under the loop's index, which then steps past it).

    >>> mmad_counted(["A", None, "B", "C", None, None, "D"])
    [True, False, False, True, False, False, True]
    """
    counted = [False] * len(letters)
    remaining = list(range(len(letters)))
    i = 0
    while i < len(remaining):
        k = remaining[i]
        if letters[k] not in VALID:
            remaining.pop(i)
        else:
            counted[k] = True
        i += 1
    return counted


def unparsed(answers: pd.DataFrame) -> int:
    """Answers that name no letter A–E."""
    return int((~answers.gpt_answer.isin(VALID)).sum())


def _dataset(image: str) -> str:
    return image.split("/")[0] if "/" in image else ""


def score_answers(answers: pd.DataFrame, mode: str = "strict") -> pd.DataFrame:
    """Accuracy table: rows = datasets + ``Average``; columns = the 7 tasks, ``Average``,
    ``Overkill``, ``Miss`` (percent). ``answers`` has MMAD's answer keys, in file order;
    ``mode``: ``mmad`` or ``strict`` (module docstring)."""
    if mode not in SCORING_MODES:
        raise ValueError(f"evaluation.scoring must be one of {SCORING_MODES}, not {mode!r}")
    if mode == "mmad":
        answers = answers[mmad_counted(answers.gpt_answer.tolist())]
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
