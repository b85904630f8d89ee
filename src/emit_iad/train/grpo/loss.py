"""GRPO's clipped policy loss with a k3 KL penalty to the reference policy.

Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask``: (B, T) over completion tokens;
``advantages``: (B,). Aggregation ``sequence`` (EMIT/GRPO: mean over each sequence's tokens,
then over sequences) or ``token`` (sum over all tokens / number of tokens, as DAPO).
"""

from __future__ import annotations

import torch

AGGREGATIONS = ("sequence", "token")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π‖π_ref): exp(ref − logp) − (ref − logp) − 1 ≥ 0.

    >>> k3_kl(torch.tensor([0.0]), torch.tensor([0.0]))
    tensor([0.])
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


LOSS_METRICS = ("clip_fraction", "kl", "ratio")  # what grpo_loss reports


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    aggregation: str = "sequence",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss to minimise and metrics (clip fraction, KL, ratio; 0-dim tensors).

    ``normalizer``: what the summed loss is divided by: the number of sequences (``sequence``)
    or of completion tokens (``token``) of the whole update. None: this call's own, which is
    right for one call per update; with micro-batches pass the update's total, so that the
    micro-batch losses add up to the loss of the whole batch.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"grpo.loss_aggregation must be one of {AGGREGATIONS}")
    eps_high = eps_low if eps_high is None else eps_high
    mask = mask.to(logp.device, logp.dtype)  # built on the CPU by the rollout
    old_logp = old_logp.to(logp.device)
    ratio = torch.exp(logp - old_logp)  # [B, T]
    adv = advantages.to(logp.device, logp.dtype)[:, None]  # [B, 1]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)  # [B, T]
    kl = torch.zeros_like(per_token)
    if beta and ref_logp is not None:
        kl = k3_kl(logp, ref_logp.to(logp.device))
        per_token = per_token + beta * kl
    if aggregation == "sequence":
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        per_sequence = (per_token * mask).sum(dim=1) / lengths  # [B]
        loss = per_sequence.sum() / (normalizer or per_sequence.shape[0])
    else:
        loss = (per_token * mask).sum() / (normalizer or mask.sum().clamp(min=1.0))
    n = mask.sum().clamp(min=1.0)
    was_clipped = ((ratio < 1.0 - eps_low) & (adv < 0)) | ((ratio > 1.0 + eps_high) & (adv > 0))
    metrics = {  # 0-dim tensors on the loss's device: no host sync per micro-batch
        "clip_fraction": (was_clipped.to(mask.dtype) * mask).sum() / n,
        "kl": (kl.detach() * mask).sum() / n,
        "ratio": (ratio.detach() * mask).sum() / n,
    }
    return loss, metrics
