"""The GRPO update: host-side scoring of the groups (rewards, EMIT's reweighted advantages,
group inputs), the share of each process, then the device-side policy update (μ passes of the
policy loss, backward per micro-batch of responses). :class:`~emit_iad.train.grpo.trainer.
GRPOTrainer` calls these in that order."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from emit_iad.train.grpo.advantages import emit_advantages
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.loss import (
    LOSS_METRICS,
    LossBatch,
    LossSettings,
    UpdateSize,
    loss_named,
    policy_loss,
)
from emit_iad.train.grpo.resampling import Group
from emit_iad.train.grpo.rewards import score
from emit_iad.train.grpo.rollout import (
    GroupInputs,
    Sampler,
    group_inputs,
    image_features,
    reference_logp,
    token_logp,
)
from emit_iad.train.harness import spans
from emit_iad.train.world import World
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.chat import Batch


@dataclass
class Policy:
    """What the update trains and what it is kept near: the prepared module (the policy), its
    bundle, and the reference (a frozen copy, or with LoRA the :class:`LoraReference` that
    rebuilds the starting policy from the base)."""

    module: torch.nn.Module
    vlm: VLM
    reference: torch.nn.Module | None = None
    ref_fewshot: object | None = None


@dataclass
class Stepper:
    """How the update applies a loss: the optimizer, the (accelerator's) backward, the context
    that holds gradient reduction back until the last micro-batch, and gradient clipping."""

    optimizer: torch.optim.Optimizer
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    clip: Callable[[], None] | None = None


@dataclass
class ScoredGroup:
    """A group ready for the update: its inputs, its advantages (G,), its prompt's batch."""

    inputs: GroupInputs
    advantages: torch.Tensor
    batch: Batch
    weight: float = 1.0  # 0: a stand-in that gives a process as many passes as the others


def reward_columns(record, n: int, completion_tokens: list[int]) -> dict[str, list]:
    """Every column of the question record, once per completion (TRL's manner: a reward that
    needs the type, the object or the mask reads it), and the sampler's token counts.

    >>> cols = reward_columns({"answer": "B", "options": ("x", "y"), "type": "AD"}, 2, [3, 4])
    >>> cols["type"], cols["options"], cols["completion_tokens"]
    (['AD', 'AD'], [['x', 'y'], ['x', 'y']], [3, 4])
    """
    cols = {str(k): [v] * n for k, v in dict(record).items()}
    cols["options"] = [list(record["options"])] * n
    cols["completion_tokens"] = list(completion_tokens)
    return cols


def score_groups(groups: list[Group], rewards, config: GRPOConfig, sampler: Sampler,
                 pad_id: int, own: Sequence[int] | None = None,
                 ) -> tuple[list[ScoredGroup], dict, list[dict]]:  # fmt: skip
    """Host side of the update: rewards, group-relative advantages with EMIT's reweighting,
    the padded group inputs of the groups ``own`` (this process's; None: all); returns them
    with the reward metrics of *all* the groups (the global batch) and a few samples."""
    own = set(range(len(groups)) if own is None else own)
    scored, samples, parts_sum = [], [], {}
    all_correct, nonzero, mixed, comp_tokens = [], 0, 0, 0
    texts_of, totals, partss = [], [], []
    for g in groups:
        texts = [r.text for r in g.responses]
        texts_of.append(texts)
        cols = reward_columns(g.prompt, len(texts), [len(r.ids) for r in g.responses])
        total, parts = score(texts, cols, rewards)
        totals.append(total)
        partss.append(parts)
    # the advantages of all groups at once (a batch-scaled estimator needs them all)
    all_adv = (emit_advantages(torch.tensor(totals), torch.tensor([g.correct for g in groups]),
                               config.do_reweight, estimator=config.advantages)
               if groups else torch.zeros(0, 0))  # fmt: skip
    for index, g in enumerate(groups):
        record, texts, total, parts = g.prompt, texts_of[index], totals[index], partss[index]
        adv = all_adv[index]
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + sum(v)
        nonzero += int(adv.abs().max() > 1e-6)
        mixed += int(any(g.correct) and not all(g.correct))  # the accuracy reward differs
        all_correct += g.correct
        comp_tokens += sum(len(r.ids) for r in g.responses)
        if index in own:
            batch = sampler.prompt_batch(record)
            scored.append(ScoredGroup(group_inputs(batch, g.responses, pad_id), adv, batch))
        rows = zip(texts, total, g.correct, strict=True)
        samples += [{"question": record["question"], "answer": record["answer"],
                     "completion": t, "reward": r, "correct": ok, "rounds": g.rounds,
                     **{f"reward/{k}": v[j] for k, v in parts.items()}}
                    for j, (t, r, ok) in enumerate(rows)]  # fmt: skip
    n_resp = len(all_correct)
    # every configured reward gets its column, NaN when no group was kept (a curve has a gap)
    metrics = {f"reward/{name}": parts_sum.get(name, 0.0) / n_resp if n_resp else math.nan
               for name, _, _ in rewards}  # fmt: skip
    metrics["accuracy"] = sum(all_correct) / max(1, n_resp)
    metrics["nonzero_advantage_share"] = nonzero / max(1, len(groups))
    # groups whose correctness varies: only these teach *what is correct* (all-right or all-wrong
    # groups differ at most in format and length); resampling turns all-wrong ones into these
    metrics["accuracy_signal_share"] = mixed / max(1, len(groups))
    metrics["completion_tokens"] = float(comp_tokens)
    metrics["completion_length"] = comp_tokens / max(1, n_resp)
    return scored, metrics, samples


def policy_update(policy: Policy, scored: list[ScoredGroup], config: GRPOConfig,
                  stepper: Stepper) -> dict[str, torch.Tensor]:
    """Device side: μ passes of the clipped loss, backward per micro-batch of responses
    (``stepper.no_sync`` keeps DDP from reducing before the last); returns the loss metrics."""
    module, vlm, reference = policy.module, policy.vlm, policy.reference
    optimizer, backward = stepper.optimizer, stepper.backward
    device = vlm.device
    micro = config.micro_batch_size or config.group_size
    n_resp = sum(sg.inputs.size for sg in scored if sg.weight)
    n_tokens = sum(sum(sg.inputs.lengths) for sg in scored if sg.weight)
    for sg in scored:  # the heatmap once per prompt (the vision tower is not trained through it)
        sg.inputs.heatmap = vlm.heatmap(sg.batch)
    old: list[torch.Tensor | None] = [None] * len(scored)
    ref: list[torch.Tensor | None] = [None] * len(scored)
    with torch.no_grad():
        for i, sg in enumerate(scored):
            gi = sg.inputs
            if config.mu > 1:
                feats = image_features(module, gi, device)
                old[i] = torch.cat([token_logp(module, gi.rows(a, b, device, feats),
                                               gi.prompt_len)
                                    for a, b in spans(gi.size, micro)])  # fmt: skip
            if config.beta:
                ref[i] = reference_logp(reference, vlm, gi, spans(gi.size, micro), device,
                                        policy.ref_fewshot)  # fmt: skip
    chunks = [(i, a, b) for i, sg in enumerate(scored) for a, b in spans(sg.inputs.size, micro)]
    # what the loss normalises by: the whole update's sequences or tokens, all groups together
    loss = loss_named(config.loss)
    size = UpdateSize(sequences=n_resp, tokens=n_tokens, micro_batches=max(1, len(chunks)),
                      max_length=config.max_new_tokens)  # fmt: skip
    settings = LossSettings(config.beta, config.eps_low, config.eps_high)
    metrics: dict[str, torch.Tensor] = {}
    # HF checkpoints layers only in training mode; the few-shot BatchNorm stays in eval (its
    # running statistics), and GRPO's LoRA dropout is 0, so the update still scores the
    # completions under the policy that sampled them
    vlm.model.train(config.gradient_checkpointing)
    for _ in range(config.mu):
        optimizer.zero_grad()
        cache = FeatureCache(module, device)
        for j, (i, a, b) in enumerate(chunks):
            gi, adv = scored[i].inputs, scored[i].advantages
            last = j == len(chunks) - 1 or chunks[j + 1][0] != i  # the group's last chunk
            feats = cache.features(i, gi, last)
            logp = token_logp(module, gi.rows(a, b, device, feats), gi.prompt_len)
            batch = LossBatch(logp, logp.detach() if old[i] is None else old[i][a:b], adv[a:b],
                              gi.mask[a:b], None if ref[i] is None else ref[i][a:b])  # fmt: skip
            value, m = policy_loss(loss, batch, settings, size)
            value = value * scored[i].weight
            share = sum(gi.lengths[a:b]) / max(1, n_tokens) / config.mu * scored[i].weight
            for k, v in m.items():
                metrics[k] = metrics.get(k, 0.0) + v.detach() * share
            value = value + cache.carried(i, last)
            with stepper.no_sync() if j < len(chunks) - 1 else contextlib.nullcontext():
                backward(value)
        if not chunks:  # nothing to learn, on every process alike (decided on the global batch)
            continue
        if stepper.clip is not None:
            stepper.clip()
        optimizer.step()
    vlm.model.eval()
    return metrics  # tensors: the caller reads them once per step


class FeatureCache:
    """A prompt's images encoded once per pass and shared by its G responses, with the exact
    gradient (a gradient cache): the group's chunks but the last see a detached copy, whose
    gradients add up; the last sees the encoder's output itself, plus a term that hands it the
    summed gradient, so one backward reaches the vision tower and the aligner (and the last
    backward of an update, the one DDP reduces on, carries every gradient). Hand-written: no
    library caches encoder outputs across backward passes."""

    def __init__(self, module, device):
        self.module, self.device = module, device
        self.group: int | None = None
        self.encoded = self.leaf = None

    def features(self, i: int, gi, last: bool):
        if self.group != i:
            self.group = i
            self.encoded = image_features(self.module, gi, self.device)
            self.leaf = None
            if self.encoded is not None:
                self.leaf = [f.detach().requires_grad_(f.requires_grad) for f in self._parts()]
        if self.encoded is None:
            return None
        if last or not self._parts()[0].requires_grad:
            return self.encoded
        return self.leaf[0] if torch.is_tensor(self.encoded) else tuple(self.leaf)

    def carried(self, i: int, last: bool):
        """At the group's last chunk: Σ ⟨encoded, gradient gathered on the detached copy⟩."""
        if not last or self.encoded is None or not self._parts()[0].requires_grad:
            return 0.0
        return sum((f * leaf.grad).sum() for f, leaf in zip(self._parts(), self.leaf, strict=True)
                   if leaf.grad is not None)  # fmt: skip

    def _parts(self) -> list:
        return [self.encoded] if torch.is_tensor(self.encoded) else list(self.encoded)


def process_share(n_groups: int, world: World) -> tuple[list[int], list[int], int]:
    """This process's groups of the global batch (round robin), the groups whose inputs it
    builds (a process with none builds the first as a stand-in), and the groups each process
    runs (as many everywhere, so as many forward and backward passes).

    >>> process_share(5, World(rank=1, size=2))
    ([1, 3], [1, 3], 3)
    >>> process_share(1, World(rank=1, size=2))
    ([], [0], 1)
    """
    own = list(range(world.rank, n_groups, world.size))
    build = own or ([0] if n_groups else [])
    return own, build, -(-n_groups // world.size)


def even_share(scored: list[ScoredGroup], has_own: bool, per_process: int) -> list[ScoredGroup]:
    """Where the groups do not divide evenly, a process short of one repeats one of its groups
    with weight 0 (its gradient is zero; the passes meet DDP's reductions)."""
    if not has_own:
        scored = [dataclasses.replace(sg, weight=0.0) for sg in scored]
    while len(scored) < per_process:
        scored.append(dataclasses.replace(scored[0], weight=0.0))
    return scored


def mean_loss_metrics(losses: dict[str, torch.Tensor], world: World) -> dict[str, float]:
    """The loss metrics of each process's share, averaged over the processes; NaN where nothing
    was updated (the columns stay the same). One host sync per step."""
    values = world.gather({k: float(v) for k, v in losses.items()})
    out = {}
    for key in LOSS_METRICS:
        got = [v[key] for v in values if key in v]
        out[key] = sum(got) / len(got) if got else math.nan
    return out
