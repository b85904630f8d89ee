"""Confidence intervals for the ablation: the MMAD average of a model (mean over tasks of the
per-task accuracy, %) and the difference between two models, by a paired bootstrap over the
questions and over the training seeds.

Written by hand: the statistic is MMAD's task-averaged accuracy and the resampling unit is a
question shared by both models (paired) crossed with the seeds; scipy's ``bootstrap`` takes
neither shape directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.estimate:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def task_average(correct: np.ndarray, tasks: Sequence[str]) -> np.ndarray:
    """MMAD average (%) of each row of ``correct`` (runs × questions, 0/1): the mean over tasks
    of the per-task accuracy.

    >>> task_average(np.array([[1, 0, 1, 1]]), ["a", "a", "b", "b"])
    array([75.])
    """
    correct = np.atleast_2d(np.asarray(correct, dtype=float))
    names, index = np.unique(np.asarray(tasks), return_inverse=True)
    onehot = np.eye(len(names))[index]  # [Q, T]
    per_task = correct @ onehot / onehot.sum(0)  # [R, T]
    return per_task.mean(1) * 100


def _weighted_average(correct: np.ndarray, onehot: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[B, R]: each run's task average with question weights ``weights`` [B, Q] (bootstrap
    counts); a task no resampled question covers is left out of that draw's mean."""
    hits = np.einsum("bq,rq,qt->brt", weights, correct, onehot)
    counts = weights @ onehot  # [B, T]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_task = hits / counts[:, None, :]
    return np.nanmean(per_task, axis=2) * 100


def bootstrap_difference(
    correct_a: np.ndarray,
    correct_b: np.ndarray,
    tasks: Sequence[str],
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """MMAD average of B minus that of A (each the mean over its runs), with a percentile
    interval from a paired bootstrap: every draw resamples the questions (the same ones for
    both, as both answered them) and the runs of each model (seeds; paired run by run when both
    have the same number, as runs of one seed share their start and data order).

    ``correct_a``: runs × questions, 0/1 (a model without seeds has one run).
    """
    a = np.atleast_2d(np.asarray(correct_a, dtype=float))
    b = np.atleast_2d(np.asarray(correct_b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] != len(tasks):
        raise ValueError(f"questions differ: {a.shape[1]}, {b.shape[1]}, {len(tasks)} tasks")
    estimate = float(task_average(b, tasks).mean() - task_average(a, tasks).mean())
    names, index = np.unique(np.asarray(tasks), return_inverse=True)
    onehot = np.eye(len(names))[index]
    rng = np.random.default_rng(seed)
    q = a.shape[1]
    diffs = []
    for start in range(0, n_boot, 250):  # in chunks: [B, R, T] stays small
        n = min(250, n_boot - start)
        picks = rng.integers(0, q, size=(n, q))
        weights = np.zeros((n, q))
        np.add.at(weights, (np.arange(n)[:, None], picks), 1.0)
        avg_a = _weighted_average(a, onehot, weights)  # [n, Ra]
        avg_b = _weighted_average(b, onehot, weights)
        runs_a = rng.integers(0, a.shape[0], size=(n, a.shape[0]))
        paired = a.shape[0] == b.shape[0]
        runs_b = runs_a if paired else rng.integers(0, b.shape[0], size=(n, b.shape[0]))
        rows = np.arange(n)[:, None]
        diffs.append(avg_b[rows, runs_b].mean(1) - avg_a[rows, runs_a].mean(1))
    diffs = np.concatenate(diffs)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


def correct_matrix(marks, ids: Sequence[str]) -> np.ndarray:
    """Runs × questions (0/1) from answer rows (``seed`` optional, ``id``, ``correct``), the
    questions in the order ``ids``; a question a run did not answer counts as wrong."""
    runs = [marks] if "seed" not in marks else [g for _, g in marks.groupby("seed", sort=True)]
    out = np.zeros((len(runs), len(ids)))
    position = {q: i for i, q in enumerate(ids)}
    for r, run in enumerate(runs):
        for q, ok in zip(run["id"], run["correct"], strict=True):
            if q in position:
                out[r, position[q]] = float(ok)
    return out


def step_intervals(
    models: dict, tasks: Sequence[str], steps: Sequence[tuple[str, str]], groups: dict,
    target: float = 2.0, n_boot: int = 2000,
) -> list[dict]:  # fmt: skip
    """For each (from, to) step and each group of questions (a boolean mask over them, e.g.
    seen and held-out objects): the difference of MMAD averages with its 95 % interval, and
    whether it meets the target (at least ``target`` points, interval above 0)."""
    rows = []
    tasks = np.asarray(tasks)
    for group, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        for a, b in steps:
            if a not in models or b not in models:
                continue
            iv = bootstrap_difference(models[a][:, mask], models[b][:, mask], tasks[mask],
                                      n_boot=n_boot)  # fmt: skip
            rows.append({"questions": group, "from": a, "to": b, "difference": iv.estimate,
                         "low": iv.low, "high": iv.high, "runs": len(models[b]),
                         "met": bool(iv.estimate >= target and iv.low > 0)})  # fmt: skip
    return rows
