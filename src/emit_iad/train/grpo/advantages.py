"""Advantage estimators by name (verl's manner) and EMIT's difficulty-aware reweighting, which
composes with any of them.

- ``group`` (GRPO, EMIT): (r − group mean) / (group std + ε);
- ``group_mean`` (Dr. GRPO): r − group mean, no division by the std (which favours groups
  whose rewards barely differ);
- ``batch`` (TRL's ``scale_rewards: batch``): (r − group mean) / (std of the whole batch + ε).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Â = (r − mean_group) / (std_group + eps); ``rewards`` shape (n_groups, G).

    The standard deviation is the unbiased one, as in TRL's GRPO.

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]])).round(decimals=4)
    tensor([[ 0.8659, -0.8659, -0.8659,  0.8659]])
    """
    mean = rewards.mean(dim=1, keepdim=True)  # [n, 1]
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    return (rewards - mean) / (std + eps)  # [n, G]


def group_mean_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Dr. GRPO: Â = r − mean_group.

    >>> group_mean_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))
    tensor([[ 0.5000, -0.5000, -0.5000,  0.5000]])
    """
    return rewards - rewards.mean(dim=1, keepdim=True)


def batch_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Â = (r − mean_group) / (std of all the batch's rewards + eps), unbiased std."""
    std = rewards.std() if rewards.numel() > 1 else torch.zeros(())
    return (rewards - rewards.mean(dim=1, keepdim=True)) / (std + eps)


ADVANTAGE_ESTIMATORS: dict[str, Callable[..., torch.Tensor]] = {
    "group": group_advantages, "group_mean": group_mean_advantages, "batch": batch_advantages,
}  # fmt: skip


def difficulty_weights(correct: torch.Tensor) -> torch.Tensor:
    """EMIT: w = 1 + (#incorrect)/G for groups with at least one correct response, else 1.

    ``correct`` (n_groups, G) bool.

    >>> difficulty_weights(torch.tensor([[True, False, False, False], [False] * 4]))
    tensor([1.7500, 1.0000])
    """
    g = correct.shape[1]
    incorrect = (~correct).sum(dim=1).float()
    return torch.where(correct.any(dim=1), 1.0 + incorrect / g, torch.ones_like(incorrect))


def emit_advantages(
    rewards: torch.Tensor, correct: torch.Tensor, reweight: bool, eps: float = 1e-4,
    estimator: str = "group",
) -> torch.Tensor:
    """Advantages (n_groups, G) by ``estimator``, multiplied by EMIT's difficulty weight when
    ``reweight``."""
    if estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"grpo.advantages must be one of {sorted(ADVANTAGE_ESTIMATORS)}, "
                         f"not {estimator!r}")  # fmt: skip
    adv = ADVANTAGE_ESTIMATORS[estimator](rewards, eps)
    if reweight:
        adv = adv * difficulty_weights(correct)[:, None]
    return adv


def group_advantages_reference(rewards: list[list[float]], eps: float = 1e-4) -> list[list[float]]:
    """Plain-loop version of :func:`group_advantages`, for tests."""
    out = []
    for group in rewards:
        n = len(group)
        mean = sum(group) / n
        std = (sum((r - mean) ** 2 for r in group) / (n - 1)) ** 0.5 if n > 1 else 0.0
        out.append([(r - mean) / (std + eps) for r in group])
    return out
