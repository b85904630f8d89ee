"""Policy losses of today's RL trainers, by name, under one signature (verl's registry manner).

Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask``: (B, T) over completion tokens;
``advantages``: (B,). Each loss owns its importance ratio, its per-token objective, its
aggregation and its normaliser (what the summed loss of a whole update is divided by, so that
micro-batch losses add up to the update's loss):

========  ==================  ==============================  ===============================
name      importance ratio    objective per token             aggregation / normaliser
========  ==================  ==============================  ===============================
grpo      per token           clipped (PPO), ε_low/ε_high     mean per sequence / sequences
dapo      per token           clipped, clip-higher ε_high     sum of tokens / tokens
bnpo      per token           clipped                         each micro-batch's token mean,
                                                              averaged over micro-batches
dr_grpo   per token           clipped                         sum of tokens / (sequences ×
                                                              max completion length)
gspo      per sequence:       clipped on the sequence ratio   mean per sequence / sequences
          exp(mean log-ratio)
cispo     per token,          −sg(clip(r))·A·log π            sum of tokens / tokens
          clipped, no grad
========  ==================  ==============================  ===============================

References: GRPO (DeepSeekMath), DAPO (Yu et al. 2025), Dr. GRPO (Liu et al. 2025, "Understanding
R1-Zero-like training"), BNPO (Xiao et al. 2025), GSPO (Zheng et al. 2025), CISPO (MiniMax-M1).
The k3 KL penalty β·KL(π‖π_ref) is added per token and aggregated as the objective is.
Written by hand, since no library exposes these as functions of tensors: TRL's live inside
its trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

LOSS_METRICS = ("clip_fraction", "kl", "ratio")  # what every policy loss reports


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(π‖π_ref): exp(ref − logp) − (ref − logp) − 1 ≥ 0.

    >>> k3_kl(torch.tensor([0.0]), torch.tensor([0.0]))
    tensor([0.])
    """
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1.0


@dataclass(frozen=True)
class LossBatch:
    """One micro-batch of completions: log-probabilities now, at sampling, of the reference."""

    logp: torch.Tensor
    old_logp: torch.Tensor
    advantages: torch.Tensor
    mask: torch.Tensor
    ref_logp: torch.Tensor | None = None


@dataclass(frozen=True)
class LossSettings:
    beta: float = 0.0
    eps_low: float = 0.2
    eps_high: float | None = None  # None: eps_low


@dataclass(frozen=True)
class UpdateSize:
    """The whole update a micro-batch belongs to (all processes' share of it on this one)."""

    sequences: int
    tokens: int
    micro_batches: int = 1
    max_length: int = 1  # max_new_tokens: Dr. GRPO's constant


@dataclass(frozen=True)
class PolicyLoss:
    name: str
    ratio: str  # token | sequence
    objective: str  # clip | cispo
    aggregation: str  # sequence (mean per sequence) | token (sum of tokens)
    normalizer: Callable[[UpdateSize, torch.Tensor], float]


POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register(loss: PolicyLoss) -> PolicyLoss:
    POLICY_LOSSES[loss.name] = loss
    return loss


register(PolicyLoss("grpo", "token", "clip", "sequence", lambda s, m: float(s.sequences)))
register(PolicyLoss("dapo", "token", "clip", "token", lambda s, m: float(max(1, s.tokens))))
register(PolicyLoss("bnpo", "token", "clip", "token",
                    lambda s, m: float(m.sum().clamp(min=1.0)) * s.micro_batches))  # fmt: skip
register(PolicyLoss("dr_grpo", "token", "clip", "token",
                    lambda s, m: float(s.sequences * s.max_length)))  # fmt: skip
register(PolicyLoss("gspo", "sequence", "clip", "sequence", lambda s, m: float(s.sequences)))
register(PolicyLoss("cispo", "token", "cispo", "token", lambda s, m: float(max(1, s.tokens))))


def loss_named(name: str) -> PolicyLoss:
    if name not in POLICY_LOSSES:
        raise ValueError(f"grpo.loss must be one of {sorted(POLICY_LOSSES)}, not {name!r}")
    return POLICY_LOSSES[name]


def policy_loss(
    loss: PolicyLoss | str, batch: LossBatch, settings: LossSettings, size: UpdateSize | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss to minimise and metrics (clip fraction, KL, ratio; 0-dim tensors). ``size``: the
    whole update's (None: this micro-batch is the update)."""
    spec = loss_named(loss) if isinstance(loss, str) else loss
    eps_low = settings.eps_low
    eps_high = eps_low if settings.eps_high is None else settings.eps_high
    logp = batch.logp
    mask = batch.mask.to(logp.device, logp.dtype)  # built on the CPU by the rollout
    old_logp = batch.old_logp.to(logp.device)
    adv = batch.advantages.to(logp.device, logp.dtype)[:, None]  # [B, 1]
    if size is None:
        size = UpdateSize(sequences=logp.shape[0], tokens=int(mask.sum()))
    if spec.ratio == "sequence":  # GSPO-token: the sequence ratio's value, each token's gradient
        lengths = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        seq_log_ratio = ((logp - old_logp) * mask).sum(dim=1, keepdim=True) / lengths
        ratio = torch.exp(seq_log_ratio.detach() + logp - logp.detach())  # [B, T]
    else:
        ratio = torch.exp(logp - old_logp)  # [B, T]
    low, high = 1.0 - eps_low, 1.0 + eps_high
    if spec.objective == "cispo":
        weight = torch.clamp(ratio, low, high).detach()
        per_token = -weight * adv * logp
        was_clipped = (ratio < low) | (ratio > high)
    else:
        unclipped = ratio * adv
        clipped = torch.clamp(ratio, low, high) * adv
        per_token = -torch.minimum(unclipped, clipped)  # [B, T]
        was_clipped = ((ratio < low) & (adv < 0)) | ((ratio > high) & (adv > 0))
    kl = torch.zeros_like(per_token)
    if settings.beta and batch.ref_logp is not None:
        kl = k3_kl(logp, batch.ref_logp.to(logp.device))
        per_token = per_token + settings.beta * kl
    normalizer = spec.normalizer(size, mask)
    if spec.aggregation == "sequence":
        lengths = mask.sum(dim=1).clamp(min=1.0)  # [B]
        per_sequence = (per_token * mask).sum(dim=1) / lengths  # [B]
        value = per_sequence.sum() / normalizer
    else:
        value = (per_token * mask).sum() / normalizer
    n = mask.sum().clamp(min=1.0)
    metrics = {  # 0-dim tensors on the loss's device: no host sync per micro-batch
        "clip_fraction": (was_clipped.to(mask.dtype) * mask).sum() / n,
        "kl": (kl.detach() * mask).sum() / n,
        "ratio": (ratio.detach() * mask).sum() / n,
    }
    return value, metrics
