"""What both training loops share: the accelerator, seeded data order with sharding, checkpoints
that resume mid-epoch, and logging into the MLflow run of the `kedro run`.

Built on accelerate (``accelerate launch`` takes it to several GPUs or nodes: DDP, FSDP,
DeepSpeed) rather than transformers' Trainer: EMIT's few-shot module rides on a forward hook and
GRPO needs its own loop anyway, so one small harness serves both stages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, set_seed

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where training is: optimizer steps done, epoch, batches consumed in that epoch."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def make_accelerator(
    grad_accum: int = 1,
    mixed_precision: str | bool | None = "no",
    seed: int = 0,
    timeout_s: float | None = None,
) -> Accelerator:
    """The run's accelerator. ``timeout_s``: how long a collective waits for the other
    processes before it raises (instead of hanging)."""
    if mixed_precision is False or mixed_precision is None:
        # YAML 1.1 reads an unquoted `no` as false (and `dvc exp run -S` rewrites the file so)
        mixed_precision = "no"
    # cpu=True without a GPU: under torchrun, accelerate then sets up MULTI_CPU over gloo
    forced = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if forced and forced != str(grad_accum):
        raise ValueError(
            f"the accelerate config sets gradient_accumulation_steps {forced}, the stage's "
            f"grad_accum is {grad_accum}: remove gradient_accumulation_steps from the "
            "accelerate config (its deepspeed_config) and set the stage's grad_accum"
        )
    handlers = []
    if timeout_s:
        handlers.append(InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s)))
    acc = Accelerator(
        gradient_accumulation_steps=grad_accum,
        mixed_precision=mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=handlers,
        # the schedules count optimizer steps; a prepared scheduler would otherwise step once
        # per process per optimizer step (2 processes: twice as fast)
        step_scheduler_with_optimizer=False,
    )
    set_seed(seed, device_specific=False)
    return acc


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world: int = 1, drop_last: bool = True) -> list[list[int]]:  # fmt: skip
    """Seeded order of ``n`` items for an epoch, in global batches of ``batch_size * world``,
    each process taking its own ``batch_size`` slice (same order on every process)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).tolist()
    step = batch_size * world
    stop = (n // step) * step if drop_last else n
    batches = []
    for i in range(0, stop, step):
        chunk = order[i : i + step][rank * batch_size : (rank + 1) * batch_size]
        if chunk:
            batches.append(chunk)
    return batches


def spans(n: int, size: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` micro-batches of at most ``size`` items over ``n`` (None: one).

    >>> spans(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    size = max(1, size or n)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def lr_schedule(total: int, warmup: int) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear warm-up over ``warmup`` steps, then a
    cosine decay to 0 at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return f


def run_key(config, module: torch.nn.Module, n_items: int) -> str:
    """What a checkpoint must match to be resumed: the stage's settings, the shapes of the
    module's tensors and the amount of training data."""
    shapes = [(name, tuple(t.shape)) for name, t in module.state_dict().items()]
    text = json.dumps([asdict(config), shapes, n_items], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpointer:
    """``<folder>/checkpoint-<step>/``: accelerate state (model, optimizer, scheduler, RNG) +
    ``position.json``; the last ``keep`` are kept. Checkpoints written under another ``key``
    (other settings, another model) are set aside, not resumed."""

    def __init__(self, accelerator: Accelerator, folder: str | Path, every: int, keep: int = 2,
                 key: str = ""):  # fmt: skip
        self.acc, self.folder, self.every, self.keep = accelerator, Path(folder), every, keep
        self.key = key
        self.history: list[dict] = []  # the rows logged before the restored checkpoint

    def due(self, pos: Position) -> bool:
        return self.every > 0 and pos.step > 0 and pos.step % self.every == 0

    def save(self, pos: Position, history: list[dict] | None = None) -> Path:
        """``history``: the rows so far, so that a resumed run's curves start at step 1."""
        path = self.folder / f"checkpoint-{pos.step}"
        tmp = self.folder / f".checkpoint-{pos.step}.tmp"
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        if self.acc.is_main_process:
            (tmp / "history.json").write_text(json.dumps(history or [], default=float))
            (tmp / "position.json").write_text(json.dumps({**asdict(pos), "key": self.key}))
            if path.exists():
                shutil.rmtree(path)
            tmp.rename(path)  # a checkpoint exists whole or not at all
            for old in self.all()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return path

    def all(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name)]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def restore_latest(self) -> Position | None:
        found = [p for p in self.all() if (p / "position.json").is_file()]
        if not found:
            return None
        latest = found[-1]
        saved = json.loads((latest / "position.json").read_text())
        if saved.pop("key", "") != self.key:
            log.warning(
                "%s was written by a run with other settings or another model; starting afresh "
                "(the old checkpoints are removed)", latest)  # fmt: skip
            self.acc.wait_for_everyone()
            self.clear()
            return None
        self.acc.load_state(str(latest))
        pos = Position(**saved)
        rows = latest / "history.json"
        self.history = json.loads(rows.read_text()) if rows.is_file() else []
        log.info("Resuming from %s (step %d, epoch %d)", latest, pos.step, pos.epoch)
        return pos

    def clear(self) -> None:
        if self.acc.is_main_process:
            shutil.rmtree(self.folder, ignore_errors=True)


def history_metrics(rows: list[dict], prefix: str) -> Iterator[tuple[int, dict[str, float]]]:
    """(step, metrics) of each history row that has a number (NaN and text left out)."""
    for row in rows:
        metrics = {f"{prefix}/{k}": float(v) for k, v in row.items()
                   if k != "step" and isinstance(v, int | float) and v == v}  # fmt: skip
        if metrics:
            yield int(row.get("step", 0)), metrics


def replay_history(accelerator: Accelerator, rows: list[dict], prefix: str) -> None:
    """Log the rows a checkpoint carried into this run, so a resumed run's MLflow curves start
    where the interrupted run's did (the history table gets the same rows)."""
    for step, metrics in history_metrics(rows, prefix):
        log_metrics(accelerator, metrics, step)


def log_metrics(accelerator: Accelerator, metrics: dict[str, float], step: int) -> None:
    """Into the MLflow run that kedro-mlflow opened (main process only; none: nothing)."""
    if not accelerator.is_main_process:
        return
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def log_jsonl(accelerator: Accelerator, rows: list[dict], artifact_file: str) -> None:
    """``rows`` as one JSON-lines artifact of the kedro-mlflow run (main process only)."""
    if not accelerator.is_main_process or not rows:
        return
    import mlflow

    if mlflow.active_run() is not None:
        text = "".join(json.dumps(r, default=str) + "\n" for r in rows)
        mlflow.log_text(text, artifact_file)


def param_checksum(module: torch.nn.Module) -> float:
    """Σ of the trainable parameters (float64): equal on every process while they agree."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in module.parameters()
                         if p.requires_grad))  # fmt: skip


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: check the stage's `trainable` parts")
    return params
