"""Difficulty-aware GRPO, EMIT stage 2. One step:

1. rollout: G responses per prompt from the current policy (temperature 1.0);
2. filter: EMIT's response resampling fills the batch with groups that hold a correct response;
3. score: weighted rewards, group-relative advantages, EMIT's difficulty reweighting;
4. update: μ passes of the clipped policy loss with a k3 KL to the reference policy;
5. log, validate, checkpoint.

The loop is the project's own because no library exposes hooks for resampling and advantage
reweighting (TRL's GRPOTrainer has no dynamic sampling); generation goes through
``generate()``, behind :class:`Sampler`, the seam for a vLLM backend on GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch

from emit_iad.mmad import protocol as p
from emit_iad.params import reject_unknown
from emit_iad.train.grpo.advantages import emit_advantages
from emit_iad.train.grpo.loss import grpo_loss
from emit_iad.train.grpo.resampling import Group, Resampler
from emit_iad.train.grpo.rewards import answer_letter, build_rewards, score
from emit_iad.train.grpo.rollout import (
    GroupInputs,
    Response,
    Sampler,
    group_inputs,
    reference_logp,
    token_logp,
)
from emit_iad.train.harness import (
    Checkpointer,
    Position,
    log_metrics,
    make_accelerator,
    run_key,
    trainable_parameters,
)
from emit_iad.train.sft import prepare_model, validate
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import Batch, PromptConfig
from emit_iad.vlm.tiny import FEWSHOT_TOKEN

log = logging.getLogger(__name__)
PARAMS_FILE = "conf/base/parameters_grpo.yml"
EMIT_TASKS = (
    p.ANOMALY_DETECTION,
    p.DEFECT_CLASSIFICATION,
    p.DEFECT_LOCALIZATION,
    p.OBJECT_CLASSIFICATION,
)


@dataclass(frozen=True)
class GRPOConfig:
    """Mirrors ``grpo`` in parameters_grpo.yml (EMIT: G 8, temperature 1.0, β 0.005, ε 0.2,
    lr 1e-5, 2 epochs, LoRA + projector + soft prompt)."""

    tasks: tuple[str, ...] = EMIT_TASKS
    group_size: int = 8
    temperature: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 4  # prompts per update, per process
    # responses per forward/backward pass (None: a whole group); the update's gradient is the
    # same, peak memory scales with this instead of with G
    micro_batch_size: int | None = None
    gradient_checkpointing: bool = False  # recompute each layer in backward (real scale: on)
    steps: int = 50
    lr: float = 1e-5
    mu: int = 1
    beta: float = 0.005
    eps_low: float = 0.2
    eps_high: float | None = None
    loss_aggregation: str = "sequence"
    rewards: dict = field(
        default_factory=lambda: {"accuracy": 3.0, "format": 1.0, "cosine": 1.0, "repetition": 1.0}
    )
    reward_options: dict = field(default_factory=dict)
    difficulty_aware: bool = True
    resample: bool | None = None  # None: follow difficulty_aware
    reweight: bool | None = None
    max_resample_rounds: int = 3
    trainable: tuple[str, ...] = ("lora", "fewshot")
    lora: dict = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    sample_table_every: int = 10
    probe_prompts: int = 32  # val prompts sampled (G each) before and after: on-policy accuracy
    val_max_questions: int = 200
    val_max_new_tokens: int = 48
    mixed_precision: str = "no"
    prompt: dict = field(default_factory=lambda: {"answer_format": "think"})

    @classmethod
    def from_params(cls, params: dict) -> GRPOConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`grpo`)")
        d = {k: tuple(v) if k in ("tasks", "trainable") else v for k, v in params.items()}
        config = cls(**d)
        build_rewards(config.rewards, config.reward_options)  # unknown reward names fail here
        if config.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 ({PARAMS_FILE})")
        return config

    @property
    def do_resample(self) -> bool:
        return self.difficulty_aware if self.resample is None else self.resample

    @property
    def do_reweight(self) -> bool:
        return self.difficulty_aware if self.reweight is None else self.reweight

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**{"answer_format": "think", **self.prompt})


def check_inputs(vlm: VLM, train: pd.DataFrame, config: GRPOConfig) -> None:
    """Fail before any step: no data, a tokenizer without the tokens the prompts need."""
    if train.empty:
        raise ValueError(f"no training questions of types {list(config.tasks)} ({PARAMS_FILE})")
    vocab = vlm.processor.tokenizer.get_vocab()
    needed = [FEWSHOT_TOKEN] if vlm.fewshot is not None else []
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise ValueError(
            f"the model's tokenizer lacks {missing}; load it with "
            "emit_iad.vlm.loading.load_pretrained, which adds them"
        )


def train_grpo(
    vlm: VLM,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: GRPOConfig,
    checkpoint_dir: str,
    progress: Callable | None = None,
) -> tuple[VLM, pd.DataFrame, list[dict]]:
    """Train in place; returns the model, per-step metrics and sample completions."""
    train = train[train.type.isin(config.tasks)].reset_index(drop=True)
    check_inputs(vlm, train, config)
    acc = make_accelerator(1, config.mixed_precision, config.seed)
    lora = "lora" in config.trainable
    # the starting policy, copied before training changes it (LoRA: the base with the adapter
    # off, and a copy of the few-shot module only); moved where the policy lives
    reference = None if lora else EMITModule(copy.deepcopy(vlm)).to(acc.device).eval()
    prepare_model(vlm, config)  # type: ignore[arg-type]  (same trainable/lora fields as SFT)
    module = EMITModule(vlm)
    optimizer = torch.optim.AdamW(trainable_parameters(module), lr=config.lr)
    module, optimizer = acc.prepare(module, optimizer)
    ref_fewshot = copy.deepcopy(vlm.fewshot) if lora and vlm.fewshot is not None else None
    if ref_fewshot is not None:
        ref_fewshot.to(acc.device).eval()
    ckpt = Checkpointer(acc, checkpoint_dir, config.checkpoint_every, config.keep_checkpoints,
                      run_key(config, module, len(train)))  # fmt: skip
    pos = ckpt.restore_latest() or Position()
    prompt = config.prompt_config()
    rewards = build_rewards(config.rewards, config.reward_options)
    records = [r for _, r in train.iterrows()]
    sampler = Sampler(vlm, prompt, config.temperature, config.max_new_tokens)
    tok = vlm.processor.tokenizer

    def correct(record, response: Response) -> bool:
        return answer_letter(response.text, len(record["options"])) == record["answer"]

    resampler = Resampler(
        sampler, correct, config.group_size, config.do_resample, config.max_resample_rounds
    )

    def next_prompt():
        order = torch.randperm(
            len(records), generator=torch.Generator().manual_seed(config.seed + pos.epoch)
        )
        mine = order[acc.process_index :: acc.num_processes]
        if pos.batch_in_epoch >= len(mine):
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
            return next_prompt()
        record = records[int(mine[pos.batch_in_epoch])]
        pos.batch_in_epoch += 1
        return record

    probe = [r for _, r in val[val.type.isin(config.tasks)].head(config.probe_prompts).iterrows()]

    def probe_accuracy() -> float:
        """Share of correct sampled responses on the same val prompts: the mean accuracy
        reward, free of which training prompts a step happened to draw. Its own RNG stream,
        so training is the same with or without it."""
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            hits = [correct(r, x) for r in probe for x in sampler(r, config.group_size)]
        return sum(hits) / max(1, len(hits))

    # Eval mode throughout (gradients still flow): no dropout, and the few-shot BatchNorm keeps
    # its running statistics, so the update scores completions under the policy that sampled
    # them (a group repeats one prompt, whose batch statistics would be degenerate).
    module.eval()
    samples: list[dict] = []
    history: list[dict] = []
    if probe and pos.step == 0:
        history.append({"step": 0, "probe_accuracy": probe_accuracy()})
        log_metrics(acc, {"grpo/probe_accuracy": history[-1]["probe_accuracy"]}, 0)
    bar = progress(config.steps, pos.step) if progress else None
    while pos.step < config.steps:
        t0 = time.perf_counter()
        groups, fill = resampler.fill(next_prompt, config.batch_size)
        if not groups:
            log.warning(
                "step %d: no prompt had a correct response after %d resampling rounds; "
                "nothing to learn from (is the starting model trained?)",
                pos.step + 1,
                config.max_resample_rounds,
            )
        t1 = time.perf_counter()
        metrics, step_samples = update(
            module,
            reference,
            vlm,
            sampler,
            groups,
            rewards,
            config,
            optimizer,
            acc.backward,
            tok,
            ref_fewshot if reference is None else None,
            lambda: acc.no_sync(module),
        )
        metrics["rollout_s"], metrics["update_s"] = t1 - t0, time.perf_counter() - t1
        pos.step += 1
        elapsed = time.perf_counter() - t0
        metrics.update(
            {k: v for k, v in fill.as_metrics().items()},
            step_s=elapsed,
            tokens_per_s=metrics.get("completion_tokens", 0.0) / elapsed,
        )
        history.append({"step": pos.step, **metrics})
        log_metrics(acc, {f"grpo/{k}": v for k, v in metrics.items()}, pos.step)
        if config.sample_table_every and pos.step % config.sample_table_every == 0:
            samples += [{"step": pos.step, **s} for s in step_samples[:8]]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                acc=f"{metrics.get('accuracy', 0):.2f}", kl=f"{metrics.get('kl', 0):.3f}"
            )
        if ckpt.due(pos):
            ckpt.save(pos)
    if bar is not None:
        bar.close()
    if probe:
        history.append({"step": pos.step, "probe_accuracy": probe_accuracy()})
        log_metrics(acc, {"grpo/probe_accuracy": history[-1]["probe_accuracy"]}, pos.step)
    if len(val):
        final = validate(
            vlm,
            val[val.type.isin(config.tasks)].head(config.val_max_questions),
            prompt,
            config.val_max_new_tokens,
        )
        history.append({"step": pos.step, **final})
        log_metrics(acc, {f"grpo/{k}": v for k, v in final.items()}, pos.step)
    acc.wait_for_everyone()
    ckpt.clear()
    return vlm, pd.DataFrame(history), samples


@dataclass
class ScoredGroup:
    """A group ready for the update: its inputs, its advantages (G,), its prompt's batch."""

    inputs: GroupInputs
    advantages: torch.Tensor
    batch: Batch


def score_groups(groups: list[Group], rewards, config: GRPOConfig, sampler: Sampler,
                 pad_id: int) -> tuple[list[ScoredGroup], dict, list[dict]]:  # fmt: skip
    """Host side of the update: rewards, group-relative advantages with EMIT's reweighting,
    the padded group inputs; returns them with the step's reward metrics and a few samples."""
    scored, samples, parts_sum = [], [], {}
    all_correct, nonzero, mixed, comp_tokens = [], 0, 0, 0
    for g in groups:
        record = g.prompt
        texts = [r.text for r in g.responses]
        cols = {
            "answer": [record["answer"]] * len(texts),
            "options": [list(record["options"])] * len(texts),
        }
        total, parts = score(texts, cols, rewards)
        for k, v in parts.items():
            parts_sum[k] = parts_sum.get(k, 0.0) + sum(v)
        correct = torch.tensor(g.correct)[None]
        adv = emit_advantages(torch.tensor(total)[None], correct, config.do_reweight)[0]
        nonzero += int(adv.abs().max() > 1e-6)
        mixed += int(any(g.correct) and not all(g.correct))  # the accuracy reward differs
        all_correct += g.correct
        batch = sampler.prompt_batch(record)
        gi = group_inputs(batch, g.responses, pad_id)
        comp_tokens += sum(gi.lengths)
        scored.append(ScoredGroup(gi, adv, batch))
        samples += [{"question": record["question"], "answer": record["answer"],
                     "completion": t, "reward": r}
                    for t, r in zip(texts[:2], total[:2], strict=False)]  # fmt: skip
    n_resp = len(all_correct)
    metrics = {f"reward/{k}": v / max(1, n_resp) for k, v in parts_sum.items()}
    metrics["accuracy"] = sum(all_correct) / max(1, n_resp)
    metrics["nonzero_advantage_share"] = nonzero / max(1, len(groups))
    # groups whose correctness varies: only these teach *what is correct* (all-right or all-wrong
    # groups differ at most in format and length); resampling turns all-wrong ones into these
    metrics["accuracy_signal_share"] = mixed / max(1, len(groups))
    metrics["completion_tokens"] = float(comp_tokens)
    metrics["completion_length"] = comp_tokens / max(1, n_resp)
    return scored, metrics, samples


def policy_update(
    module,
    reference,
    vlm: VLM,
    scored: list[ScoredGroup],
    config: GRPOConfig,
    optimizer,
    backward: Callable[[torch.Tensor], None],
    ref_fewshot,
    no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """Device side: μ passes of the clipped loss, backward per micro-batch of responses
    (``no_sync`` keeps DDP from reducing before the last); returns the loss metrics."""
    device = vlm.device
    micro = config.micro_batch_size or config.group_size
    n_resp = sum(sg.inputs.size for sg in scored)
    n_tokens = sum(sum(sg.inputs.lengths) for sg in scored)
    for sg in scored:  # the heatmap once per prompt (the vision tower is not trained through it)
        sg.inputs.heatmap = vlm.heatmap(sg.batch)
    old: list[torch.Tensor | None] = [None] * len(scored)
    ref: list[torch.Tensor | None] = [None] * len(scored)
    with torch.no_grad():
        for i, sg in enumerate(scored):
            gi = sg.inputs
            if config.mu > 1:
                old[i] = torch.cat([token_logp(module, gi.rows(a, b, device), gi.prompt_len)
                                    for a, b in gi.spans(micro)])  # fmt: skip
            if config.beta:
                ref[i] = torch.cat([reference_logp(reference, vlm, gi.rows(a, b, device),
                                                   gi.prompt_len, ref_fewshot)
                                    for a, b in gi.spans(micro)])  # fmt: skip
    # the update's normaliser: sequences (EMIT) or tokens (DAPO) of all its groups together
    normalizer = float(n_resp if config.loss_aggregation == "sequence" else max(1, n_tokens))
    chunks = [(i, a, b) for i, sg in enumerate(scored) for a, b in sg.inputs.spans(micro)]
    metrics: dict[str, torch.Tensor] = {}
    # HF checkpoints layers only in training mode; the few-shot BatchNorm stays in eval (its
    # running statistics), and GRPO's LoRA dropout is 0, so the update still scores the
    # completions under the policy that sampled them
    vlm.model.train(config.gradient_checkpointing)
    for _ in range(config.mu):
        optimizer.zero_grad()
        for j, (i, a, b) in enumerate(chunks):
            gi, adv = scored[i].inputs, scored[i].advantages
            logp = token_logp(module, gi.rows(a, b, device), gi.prompt_len)
            loss, m = grpo_loss(
                logp,
                logp.detach() if old[i] is None else old[i][a:b],
                adv[a:b],
                gi.mask[a:b],
                None if ref[i] is None else ref[i][a:b],
                config.beta,
                config.eps_low,
                config.eps_high,
                config.loss_aggregation,
                normalizer,
            )
            share = sum(gi.lengths[a:b]) / max(1, n_tokens) / config.mu
            for k, v in m.items():
                metrics[k] = metrics.get(k, 0.0) + v.detach() * share
            with no_sync() if j < len(chunks) - 1 else contextlib.nullcontext():
                backward(loss)
        if not chunks:  # nothing to learn: a zero loss still meets the other processes
            backward(sum(q.sum() * 0 for q in module.parameters() if q.requires_grad))
        optimizer.step()
    vlm.model.eval()
    return metrics  # tensors: the caller reads them once per step


def as_floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def update(module, reference, vlm: VLM, sampler: Sampler, groups: list[Group], rewards,
           config: GRPOConfig, optimizer, backward, tok, ref_fewshot,
           no_sync=contextlib.nullcontext) -> tuple[dict, list[dict]]:  # fmt: skip
    """Score the groups, then update the policy; returns step metrics and samples."""
    scored, metrics, samples = score_groups(groups, rewards, config, sampler, tok.pad_token_id)
    losses = policy_update(module, reference, vlm, scored, config, optimizer, backward,
                           ref_fewshot, no_sync)  # fmt: skip
    metrics.update(as_floats(losses))
    return metrics, samples
