"""Group-relative advantages and EMIT's difficulty-aware reweighting."""

from __future__ import annotations

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
    rewards: torch.Tensor, correct: torch.Tensor, reweight: bool, eps: float = 1e-4
) -> torch.Tensor:
    """Advantages (n_groups, G), multiplied by the difficulty weight when ``reweight``."""
    adv = group_advantages(rewards, eps)
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
