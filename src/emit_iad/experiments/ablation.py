"""EMIT's ablation at small scale: base, SFT, SFT + GRPO, SFT + difficulty-aware GRPO, each
GRPO variant trained from the same SFT model with several seeds and evaluated on the same MMAD
benchmark; a paper-style table (7 tasks + average, mean ± std over seeds) and training figures.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from emit_iad.atomic import atomic_file
from emit_iad.evaluate.config import evaluation_config
from emit_iad.evaluate.runner import run_benchmark
from emit_iad.mmad import protocol as p
from emit_iad.mmad.scoring import score_answers
from emit_iad.params import reject_unknown, setting
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.trainer import train_grpo
from emit_iad.train.harness import history_metrics
from emit_iad.train.world import in_workers
from emit_iad.vlm.answering import LocalAnswerer
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.loading import load_vlm

log = logging.getLogger(__name__)
PARAMS_FILE = "conf/base/parameters_ablation.yml"
COLUMNS = [*p.TASKS, "Average"]
# row label -> overrides of the `grpo` parameters (EMIT's Table: GRPO vs difficulty-aware GRPO)
VARIANTS = {
    "SFT + GRPO": {"difficulty_aware": False, "resample": None, "reweight": None},
    "SFT + GRPO + resampling": {"difficulty_aware": False, "resample": True, "reweight": False},
    "SFT + GRPO + reweighting": {"difficulty_aware": False, "resample": False, "reweight": True},
    "SFT + DA-GRPO": {"difficulty_aware": True, "resample": None, "reweight": None},
}


@dataclass(frozen=True)
class AblationConfig:
    """EMIT's ablation (``ablation`` in parameters_ablation.yml lists what it changes)."""

    seeds: tuple[int, ...] = setting((0, 1), "seeds of every GRPO row")
    variants: tuple[str, ...] = setting(
        tuple(VARIANTS), "rows trained: EMIT's four (standard GRPO, resampling only, "
        "reweighting only, both) and any label of `rows`")
    grpo: dict = setting(
        factory=dict, help="overrides of `grpo` for every ablation run, e.g. {steps: 20}")
    rows: dict = setting(
        factory=dict, help="more rows: label -> overrides of `grpo`, e.g. {'SFT + Dr. GRPO': "
        "{loss: dr_grpo, advantages: group_mean, difficulty_aware: false}}")
    workers: int = setting(
        1, "runs trained at once, each in its own process with cores / workers threads")

    @classmethod
    def from_params(cls, params: dict) -> AblationConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`ablation`)")
        d = {k: tuple(v) if k in ("seeds", "variants") else v for k, v in params.items()}
        config = cls(**d)
        if unknown := set(config.variants) - set(config.all_rows()):
            raise ValueError(
                f"ablation.variants: unknown {sorted(unknown)}; choose from "
                f"{list(config.all_rows())} or define it under ablation.rows ({PARAMS_FILE})"
            )
        from emit_iad.train.grpo.config import GRPOConfig

        for label, overrides in config.rows.items():  # each row a valid grpo section
            if not isinstance(overrides, dict):
                raise ValueError(f"ablation.rows.{label}: a mapping of grpo settings "
                                 f"({PARAMS_FILE})")  # fmt: skip
            GRPOConfig.from_params({**config.grpo, **overrides})
        if not config.seeds:
            raise ValueError(f"ablation.seeds is empty ({PARAMS_FILE})")
        return config

    def all_rows(self) -> dict[str, dict]:
        """EMIT's four rows and the configured ones: label -> overrides of ``grpo``."""
        return {**VARIANTS, **self.rows}


def score_model(vlm: VLM, questions: pd.DataFrame, settings: dict,
                progress: Callable | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """MMAD accuracy table (datasets × tasks, with the Average row) of an in-memory model, in
    the evaluation's scoring mode (``evaluation.scoring``), and its answers (id, question_type,
    correct) for the intervals."""
    config = evaluation_config(settings)
    prompt = PromptConfig.from_params(config.prompt)
    answerer = LocalAnswerer(vlm, prompt, config.batch_size, config.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        answers, _ = run_benchmark(questions, answerer, Path(tmp) / "answers.jsonl",
                                   config.batch_size, progress)  # fmt: skip
    frame = pd.DataFrame(answers)
    marks = frame.assign(correct=(frame.gpt_answer == frame.correct_answer).astype(int))
    return (score_answers(frame, config.scoring),
            marks[["id", "question_type", "correct"]])  # fmt: skip


def _model_digest(vlm: VLM) -> str:
    """Changes when any weight of the starting model changes (sums per tensor, hashed)."""
    h = hashlib.sha256()
    for name, tensor in sorted(vlm.model.state_dict().items()):
        h.update(f"{name}:{float(tensor.double().sum()):.10e}".encode())
    if vlm.fewshot is not None:
        for name, tensor in sorted(vlm.fewshot.state_dict().items()):
            h.update(f"f.{name}:{float(tensor.double().sum()):.10e}".encode())
    return h.hexdigest()[:16]


def _result_key(model: str, params: dict, evaluation: dict, questions: pd.DataFrame,
                train: pd.DataFrame) -> str:  # fmt: skip
    """What a finished (variant, seed) depends on: the SFT model, its GRPO settings, the scoring
    settings, the training and test questions."""
    parts = [model, json.dumps(params, sort_keys=True, default=str),
             json.dumps({k: evaluation.get(k) for k in ("prompt", "max_new_tokens", "scoring")},
                        sort_keys=True, default=str),
             ",".join(map(str, questions.id)), str(len(train))]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _child_run(name: str, params: dict):
    """An MLflow child run under the stage's run (kedro-mlflow's), so every variant and seed has
    its own curves; nothing when no run is active (another process, no tracking)."""
    if mlflow.active_run() is None:
        yield None
        return
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
        yield run


def run_ablation(
    sft: VLM,
    train: pd.DataFrame,
    val: pd.DataFrame,
    questions: pd.DataFrame,
    grpo_params: dict,
    evaluation: dict,
    config: AblationConfig,
    checkpoint_root: str | Path,
    progress: Callable | None = None,
    score_progress: Callable | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train and score every (variant, seed); returns the per-run MMAD rows (variant, seed,
    tasks, Average), the concatenated per-step GRPO histories (with variant, seed) and every
    run's answers (variant, seed, id, question_type, correct: 0/1) for the intervals.

    Each finished (variant, seed) is kept in ``<checkpoint_root>/results/`` under a key of
    everything it depends on: an interrupted ablation resumes without redoing it (and a
    training cut short resumes from its own checkpoint). Each one is an MLflow child run.
    """
    rows, histories, answers = [], [], []
    results = Path(checkpoint_root) / "results"
    model = _model_digest(sft)
    jobs = []
    for variant in config.variants:
        for seed in config.seeds:
            params = {**grpo_params, **config.grpo, **config.all_rows()[variant], "seed": seed}
            GRPOConfig.from_params(params)  # a bad setting fails before any training
            slug = f"{variant.replace(' ', '').replace('+', '_').lower()}-seed{seed}"
            key = _result_key(model, params, evaluation, questions, train)
            jobs.append(_Job(variant, seed, params, key, results / f"{slug}.json",
                             str(Path(checkpoint_root) / slug)))  # fmt: skip
    todo = [j for j in jobs if _kept(j) is None]
    if config.workers > 1 and len(todo) > 1:
        _train_in_workers(todo, sft, train, val, questions, evaluation, config.workers)
    for job in jobs:
        with _child_run(f"{job.variant} seed {job.seed}", {"variant": job.variant, **job.params}):
            done = _kept(job)
            if done is not None:
                log.info("%s seed %d: trained and scored (%s)", job.variant, job.seed, job.kept)
                _log_history(pd.DataFrame(done["history"]))
            else:  # in this process, its curves live in the child run
                bar = progress(job.variant, job.seed) if progress else None
                sbar = (lambda it, n, v=job.variant, s=job.seed: score_progress(it, n, v, s)
                        ) if score_progress else None  # fmt: skip
                done = _train_and_score(job, copy.deepcopy(sft), train, val, questions,
                                        evaluation, bar, sbar)  # fmt: skip
            row = done["row"]
            if mlflow.active_run() is not None:
                mlflow.log_metrics({f"mmad/{c.lower().replace(' ', '_')}": float(row[c])
                                    for c in COLUMNS if row[c] == row[c]})  # fmt: skip
        rows.append(row)
        histories.append(pd.DataFrame(done["history"]).assign(variant=job.variant, seed=job.seed))
        answers.append(pd.DataFrame(done["answers"]).assign(variant=job.variant, seed=job.seed))
    marks = pd.concat(answers, ignore_index=True)
    # each answer's object from the question records, never parsed out of its ID
    marks["object"] = marks.id.map(questions.drop_duplicates("id").set_index("id")["object"])
    return (pd.DataFrame(rows), pd.concat(histories, ignore_index=True),
            marks[["variant", "seed", "id", "object", "question_type", "correct"]])


@dataclass(frozen=True)
class _Job:
    variant: str
    seed: int
    params: dict
    key: str
    kept: Path  # the finished result, JSON
    checkpoints: str


def _kept(job: _Job) -> dict | None:
    if not job.kept.is_file():
        return None
    done = json.loads(job.kept.read_text())
    return done if done.get("key") == job.key else None


def _train_and_score(job: _Job, sft: VLM, train, val, questions, evaluation: dict,
                     bar=None, score_bar=None) -> dict:  # fmt: skip
    """Train one (variant, seed) from the SFT model, score it, keep the result (atomic)."""
    grpo = GRPOConfig.from_params(job.params)
    trained, history, _ = train_grpo(sft, train, val, grpo, job.checkpoints, bar)
    table, marks = score_model(trained, questions, evaluation, score_bar)
    done = {"key": job.key,
            "row": {"variant": job.variant, "seed": job.seed,
                    **{c: float(table.loc["Average", c]) for c in COLUMNS}},
            "history": json.loads(history.to_json(orient="records")),
            "answers": marks.to_dict(orient="list")}  # fmt: skip
    with atomic_file(job.kept) as fh:
        json.dump(done, fh)
    return done


def _worker(folder: str, job: _Job, train, val, questions, evaluation: dict,
            threads: int) -> str:  # fmt: skip
    """One (variant, seed) in a process of its own (no MLflow: the main process logs it)."""
    import torch

    torch.set_num_threads(threads)
    _train_and_score(job, load_vlm(folder), train, val, questions, evaluation)
    return f"{job.variant} seed {job.seed}"


def _train_in_workers(jobs: list[_Job], sft: VLM, train, val, questions, evaluation: dict,
                      workers: int) -> None:  # fmt: skip
    """The jobs in ``workers`` spawned processes; each keeps its result as it finishes, so a
    failure loses only the runs still in flight."""
    import os

    threads = max(1, (os.cpu_count() or 1) // workers)
    with tempfile.TemporaryDirectory() as tmp:
        sft.save(Path(tmp) / "sft")
        calls = [(str(Path(tmp) / "sft"), job, train, val, questions, evaluation, threads)
                 for job in jobs]  # fmt: skip
        for n, done in enumerate(in_workers(_worker, calls, workers), 1):
            log.info("ablation: %s done (%d of %d)", done, n, len(jobs))


def _log_history(history: pd.DataFrame) -> None:
    """A kept run's curves into its new child run, as its training logged them."""
    if mlflow.active_run() is None:
        return
    for step, metrics in history_metrics(history.to_dict("records"), "grpo"):
        mlflow.log_metrics(metrics, step=step)


def paper_table(fixed: dict[str, pd.Series], runs: pd.DataFrame) -> pd.DataFrame:
    """Rows: the fixed models (one evaluation each) then the variants (mean ± std over seeds);
    columns: the 7 MMAD tasks, Average and the seeds.

    >>> runs = pd.DataFrame({"variant": ["G", "G"], "seed": [0, 1],
    ...                      **{c: [50.0, 60.0] for c in COLUMNS}})
    >>> paper_table({"SFT": pd.Series({c: 40.0 for c in COLUMNS})}, runs).loc["G", "Average"]
    '55.0 ± 7.1'
    """
    out = {}
    for name, series in fixed.items():
        out[name] = {c: f"{float(series[c]):.1f}" for c in COLUMNS} | {"seeds": "–"}
    for variant, g in runs.groupby("variant", sort=False):
        mean, std = g[COLUMNS].mean(), g[COLUMNS].std(ddof=1).fillna(0.0)
        out[variant] = {c: f"{mean[c]:.1f} ± {std[c]:.1f}" for c in COLUMNS}
        out[variant]["seeds"] = ", ".join(str(s) for s in g.seed)
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("model")


def training_summary(histories: pd.DataFrame, window: int | None = None) -> pd.DataFrame:
    """Per variant and seed: on-policy rollout accuracy over the first and last ``window``
    steps (default: a third of the run), the shares of prompts with a non-zero advantage and
    with an accuracy signal (correct and incorrect responses), difficult shares, step time."""
    rows = []
    for (variant, seed), h in histories.groupby(["variant", "seed"], sort=False):
        steps = h.dropna(subset=["rollout_accuracy"])
        window_ = window or max(1, len(steps) // 3)
        rows.append({
            "variant": variant, "seed": seed, "steps": len(steps),
            "rollout_accuracy_first": steps.rollout_accuracy.head(window_).mean(),
            "rollout_accuracy_last": steps.rollout_accuracy.tail(window_).mean(),
            **_probe(h),
            "nonzero_advantage_share": steps.nonzero_advantage_share.mean(),
            "accuracy_signal_share": steps["accuracy_signal_share"].mean(),
            "difficult_before": steps.difficult_before.mean(),
            "difficult_after": steps.difficult_after.mean(),
            "resample_rounds_per_step": steps.resample_rounds.mean(),
            "step_s": steps.step_s.mean(),
            "val_accuracy": h["val/accuracy"].dropna().iloc[-1] if "val/accuracy" in h else None,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _probe(history: pd.DataFrame) -> dict:
    """Sampled accuracy on the fixed val prompts before and after training."""
    if "probe_accuracy" not in history or history.probe_accuracy.isna().all():
        return {}
    probe = history.dropna(subset=["probe_accuracy"]).sort_values("step")
    return {"probe_accuracy_start": probe.probe_accuracy.iloc[0],
            "probe_accuracy_end": probe.probe_accuracy.iloc[-1]}  # fmt: skip


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub table (no extra dependency)."""
    head = [table.index.name or "model", *table.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i), *map(str, r)]) + " |" for i, r in table.iterrows()]
    return "\n".join(lines) + "\n"


def curves_figure(histories: pd.DataFrame, window: int = 5) -> plt.Figure:
    """Rollout accuracy and the non-zero-advantage share per step, per variant (seed mean,
    moving average over ``window`` steps)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    panels = (
        (axes[0], "rollout_accuracy", "on-policy accuracy"),
        (axes[1], "accuracy_signal_share", "prompts with correct and incorrect responses"),
    )
    for ax, col, title in panels:
        for variant, g in histories.dropna(subset=[col]).groupby("variant", sort=False):
            curve = g.groupby("step")[col].mean().rolling(window, min_periods=1).mean()
            ax.plot(curve.index, curve.values, label=variant)
        ax.set(xlabel="GRPO step", title=title, ylim=(0, 1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
