"""What a GRPO launch does per optimizer step and in all, in prompts and in completions.

Two ways to state the batch:

- ``batch_size``: prompts per rollout round per process; ``grad_accum`` rounds per optimizer
  step, each filled (and resampled) on its own.
- ``per_device_completions``: EMIT's unit. ms-swift 3.4's ``per_device_train_batch_size``
  counts *completions*, and one optimizer step covers ``per_device × processes × grad_accum``
  of them (``effective_train_batch_size`` in EMIT's ``grpo_Trainer.py``, which also requires it
  to be a multiple of G). Its dynamic sampling works on that whole batch at once, so here one
  fill per optimizer step covers all its prompts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emit_iad.train.grpo.config import GRPOConfig


@dataclass(frozen=True)
class LaunchPlan:
    processes: int
    prompts_per_step: int  # global: every process together
    completions_per_step: int
    completions_per_process: int  # per optimizer step
    fills_per_step: int  # resampled batches per optimizer step
    prompts_per_fill: int
    steps_per_epoch: int
    total_steps: int

    def as_dict(self) -> dict:
        return asdict(self)


def plan_launch(config: GRPOConfig, processes: int, n_prompts: int) -> LaunchPlan:
    """The plan of a launch of ``processes`` over ``n_prompts`` training prompts.

    EMIT's Stage2.sh (8 processes, 4 per device, accumulation 2, G 8): 8 prompts × 8
    completions per optimizer step.

    >>> from emit_iad.train.grpo.config import GRPOConfig
    >>> emit = GRPOConfig(per_device_completions=4, grad_accum=2, group_size=8, epochs=2)
    >>> plan = plan_launch(emit, 8, 1000)
    >>> plan.prompts_per_step, plan.completions_per_step, plan.completions_per_process
    (8, 64, 8)
    >>> plan.fills_per_step, plan.steps_per_epoch, plan.total_steps
    (1, 125, 250)
    """
    g = config.group_size
    if config.per_device_completions:
        completions = config.per_device_completions * processes * config.grad_accum
        if completions % g:
            raise ValueError(
                f"grpo.per_device_completions {config.per_device_completions} x {processes} "
                f"processes x grad_accum {config.grad_accum} = {completions} completions per "
                f"optimizer step, not a multiple of group_size {g} (EMIT's trainer refuses "
                "the same)"
            )
        prompts, fills = completions // g, 1
    else:
        prompts, fills = config.batch_size * processes * config.grad_accum, config.grad_accum
    per_epoch = max(1, math.ceil(n_prompts / prompts))
    total = (config.steps if config.epochs is None
             else max(1, math.ceil(config.epochs * n_prompts / prompts)))  # fmt: skip
    return LaunchPlan(processes, prompts, prompts * g, prompts * g // processes, fills,
                      prompts // fills, per_epoch, total)  # fmt: skip
