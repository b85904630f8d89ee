"""What both training loops share: the accelerator, seeded data order with sharding, checkpoints
that resume mid-epoch, and logging into the MLflow run of the `kedro run`.

Built on accelerate (``accelerate launch`` takes it to several GPUs or nodes: DDP, FSDP,
DeepSpeed) rather than transformers' Trainer: EMIT's few-shot module rides on a forward hook and
GRPO needs its own loop anyway, so one small harness serves both stages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs, set_seed

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
    group = {"timeout": timedelta(seconds=timeout_s)} if timeout_s else {}
    if deepspeed_launch() and not torch.cuda.is_available():
        # accelerate finds no backend for DeepSpeed without GPUs and would run each process
        # as a world of one (every one rank 0); gloo joins them, for DeepSpeed's CPU accelerator
        group["backend"] = "gloo"
    handlers = [InitProcessGroupKwargs(**group)] if group else []
    # DDP: a micro-batch may leave trainables unused (a text-as-query question has no image,
    # so the aligner and the ViT's LoRA get no gradient); DDP must then not wait for them
    handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    acc = Accelerator(
        gradient_accumulation_steps=grad_accum,
        mixed_precision=mixed_precision,
        # (but for a DeepSpeed launch, which cpu=True would turn into plain MULTI_CPU:
        # DeepSpeed's CPU accelerator then runs the engine over gloo)
        cpu=not torch.cuda.is_available() and not deepspeed_launch(),
        kwargs_handlers=handlers,
        # the schedules count optimizer steps; a prepared scheduler would otherwise step once
        # per process per optimizer step (2 processes: twice as fast)
        step_scheduler_with_optimizer=False,
    )
    set_seed(seed, device_specific=False)
    return acc


def deepspeed_launch() -> bool:
    """Whether `accelerate launch` was given a DeepSpeed config."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def end_launch() -> None:
    """The end of a multi-process launch: every process meets, then leaves the process group.

    A process that exits with its group alive tears gloo's threads down during interpreter
    shutdown; C++ then aborts it ("terminate called without an active exception", SIGABRT, seen
    on a rank that finished first under DeepSpeed ZeRO-2), and the launcher reports the whole
    launch failed although every step and every file was done. No-op when run alone."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    from accelerate.state import PartialState

    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()


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


SCHEDULES = ("cosine", "linear", "constant")


def lr_schedule(total: int, warmup: int, kind: str = "cosine") -> Callable[[int], float]:
    """Learning-rate factor per optimizer step: linear warm-up over ``warmup`` steps, then
    ``kind``: a cosine decay to 0 at ``total``, a linear one (HF Trainer's default), or none.

    >>> [round(lr_schedule(4, 0, k)(2), 3) for k in SCHEDULES]
    [0.5, 0.5, 1.0]
    >>> [round(lr_schedule(5, 1, "linear")(s), 2) for s in range(5)]
    [1.0, 1.0, 0.75, 0.5, 0.25]
    """
    if kind not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {kind!r}; use one of {SCHEDULES}")

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if kind == "constant":
            return 1.0
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1 + math.cos(math.pi * progress))

    return f


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
    """Σ of the trainable parameters (float64): equal on every process while they agree.
    Under ZeRO-3 each process holds a shard; the parameters are gathered first (a collective:
    every process calls this)."""
    params = [p for p in module.parameters() if p.requires_grad]
    with gathered(params), torch.no_grad():
        return float(sum(p.detach().double().sum() for p in params))


def _zero3(params) -> bool:
    return any(hasattr(p, "ds_id") for p in params)


def gathered(params):
    """Context with ZeRO-3's shards gathered into whole parameters (nothing to do otherwise)."""
    if not _zero3(params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def whole_parameters(vlm):
    """Context with every parameter of a VLM whole (ZeRO-3 gathers its shards; otherwise
    nothing to do): generation runs outside the engine's forward, on each process alone, as
    TRL's ``ds3_gather_for_generation`` does."""
    mods = [vlm.model] + ([vlm.fewshot] if vlm.fewshot is not None else [])
    return gathered([p for m in mods for p in m.parameters()])


def deepspeed_setup(accelerator: Accelerator, micro_batch: int,
                    max_grad_norm: float | None) -> None:  # fmt: skip
    """What accelerate's DeepSpeed config leaves ``auto`` and cannot fill without a
    dataloader: the micro-batch per GPU; and the stage's gradient clipping (DeepSpeed clips
    inside its step, accelerate's ``clip_grad_norm_`` does nothing there)."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None:
        return
    config = plugin.deepspeed_config
    if config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        config["train_micro_batch_size_per_gpu"] = int(micro_batch)
    # DeepSpeed checks train_batch_size = micro × accumulation × processes; accelerate leaves
    # it to a dataloader it is not given here
    accum = accelerator.gradient_accumulation_steps
    config["gradient_accumulation_steps"] = accum
    config["train_batch_size"] = (config["train_micro_batch_size_per_gpu"] * accum
                                  * accelerator.num_processes)  # fmt: skip
    if config.get("gradient_clipping", "auto") == "auto":
        config["gradient_clipping"] = float(max_grad_norm or 0.0)


@contextlib.contextmanager
def hold_sync(accelerator: Accelerator, module):
    """Backward passes that add to the gradient without ending the accumulation: DDP's
    ``no_sync``; under DeepSpeed (which refuses ``no_sync`` around its step) the backward is
    marked as no accumulation boundary, so that its engine steps only after the last one."""
    if not uses_deepspeed(accelerator):
        with accelerator.no_sync(module):
            yield
        return
    state = accelerator.gradient_state
    before = state.sync_gradients
    state._set_sync_gradients(False)  # accelerate's own switch (it has no public setter)
    try:
        yield
    finally:
        state._set_sync_gradients(before)


def consolidate(module: torch.nn.Module) -> None:
    """Under ZeRO-3, put every parameter back whole on each process, so that the model can be
    saved and used outside the engine (its shards are gathered once, at the end)."""
    params = list(module.parameters())
    if not _zero3(params):
        return
    import deepspeed

    for p in params:
        with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
            whole = p.data.detach().clone()
        p.data = whole


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: check the stage's `trainable` parts")
    return params


class MasterAdamW(torch.optim.AdamW):
    """AdamW over fp32 master copies of low-precision (bf16/fp16) parameters.

    A bf16 tensor cannot hold an update of lr 1e-5 on a value of 0.02 (its spacing there is
    1.2e-4), so AdamW on the bf16 parameters themselves leaves most elements where they were.
    Here the optimizer steps fp32 masters and writes them back rounded; the model keeps its
    bf16 tensors (forward, saving and memory as before), and the masters, saved with the
    optimizer's state, carry the small updates until they show. Hand-written: torch has no
    master-weight optimizer, and DeepSpeed's bf16 optimizer only exists under DeepSpeed (which
    uses its own; see :func:`make_optimizer`).
    """

    def __init__(self, params, **kwargs):
        self.models = list(params)
        masters = [p.detach().float().clone().requires_grad_(True) for p in self.models]
        super().__init__(masters, **kwargs)

    def masters(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    @torch.no_grad()
    def step(self, closure=None):
        for model, master in zip(self.models, self.masters(), strict=True):
            master.grad = None if model.grad is None else model.grad.float()
        loss = super().step(closure)
        for model, master in zip(self.models, self.masters(), strict=True):
            model.copy_(master)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        for model in self.models:
            model.grad = None

    def state_dict(self) -> dict:
        return {**super().state_dict(), "masters": [m.detach().clone() for m in self.masters()]}

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("masters", None)
        super().load_state_dict(state_dict)
        if saved is not None:
            with torch.no_grad():
                for master, model, value in zip(self.masters(), self.models, saved, strict=True):
                    master.copy_(value)
                    model.copy_(value)


def make_optimizer(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float, beta2: float = 0.999,
    deepspeed: bool = False,
) -> torch.optim.Optimizer:
    """AdamW; with fp32 masters where a trainable tensor is bf16 or fp16 (not under DeepSpeed,
    whose bf16 optimizer keeps its own fp32 copies)."""
    kwargs = {"lr": lr, "weight_decay": weight_decay, "betas": (0.9, beta2)}
    low = any(p.dtype in (torch.bfloat16, torch.float16) for p in params)
    return MasterAdamW(params, **kwargs) if low and not deepspeed else torch.optim.AdamW(
        params, **kwargs)  # fmt: skip


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.state.deepspeed_plugin is not None
