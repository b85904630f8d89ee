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

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm.auto import tqdm

from emit_iad.mmad import protocol as p
from emit_iad.params import ParamError, reject_unknown
from emit_iad.train.checkpoints import Checkpointer, run_key
from emit_iad.train.grpo.advantages import ADVANTAGE_ESTIMATORS
from emit_iad.train.grpo.loss import loss_named
from emit_iad.train.grpo.plan import plan_launch
from emit_iad.train.grpo.resampling import VARIANTS, FillStats, Resampler
from emit_iad.train.grpo.rewards import build_rewards, is_correct
from emit_iad.train.grpo.rollout import LoraReference, Response, Sampler
from emit_iad.train.grpo.update import update
from emit_iad.train.harness import (
    SCHEDULES,
    Position,
    consolidate,
    deepspeed_setup,
    hold_sync,
    log_jsonl,
    log_metrics,
    lr_schedule,
    make_accelerator,
    make_optimizer,
    param_checksum,
    replay_history,
    trainable_parameters,
    uses_deepspeed,
)
from emit_iad.train.sft import prepare_model, validate
from emit_iad.train.world import World
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import PromptConfig
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
    batch_size: int = 4  # prompts per rollout round, per process (see plan.py)
    # EMIT's unit instead (ms-swift's per_device_train_batch_size): completions per process per
    # accumulation step; set, it replaces batch_size, and one fill covers the step (plan.py)
    per_device_completions: int | None = None
    generate_batch: int | None = None  # prompts per generate() call (None: a round's share)
    collective_timeout_s: float = 1800.0  # a process that waits longer on the others stops
    # rollout rounds per optimizer step: the step's gradient covers grad_accum × batch_size
    # prompts (micro-batched backward keeps the memory of one micro-batch)
    grad_accum: int = 1
    epochs: float | None = None  # set: steps = epochs over the training prompts (EMIT: 2)
    weight_decay: float = 0.01  # torch AdamW's default, which this loop always used
    adam_beta2: float = 0.999  # torch's default; ms-swift's (EMIT) is 0.95
    warmup_ratio: float = 0.0  # linear warm-up, then cosine decay (as SFT); 0: constant lr
    # cosine | linear (HF Trainer's default: AnomalyR1) | constant; None: cosine with a
    # warm-up, constant without one
    lr_schedule: str | None = None
    max_grad_norm: float | None = None
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
    loss: str = "grpo"  # grpo (EMIT) | dapo | bnpo | dr_grpo | gspo | cispo (loss.py)
    advantages: str = "group"  # group (EMIT) | group_mean (Dr. GRPO) | batch (advantages.py)
    rewards: dict = field(
        default_factory=lambda: {"accuracy": 3.0, "format": 1.0, "cosine": 1.0, "repetition": 1.0}
    )
    reward_options: dict = field(default_factory=dict)
    difficulty_aware: bool = True
    resample: bool | None = None  # None: follow difficulty_aware
    reweight: bool | None = None
    max_resample_rounds: int = 3
    resampling: str = "splice"  # splice | emit (EMIT's official code; resampling.py)
    top_k: int = 0  # sampling: 0 / 1.0 keep the whole distribution; ms-swift 3.4: 50 / 0.9
    top_p: float = 1.0
    trainable: tuple[str, ...] = ("lora", "fewshot")
    lora: dict = field(default_factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.0})
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    sample_table_every: int = 10
    probe_prompts: int = 32  # val prompts sampled (G each) before and after: on-policy accuracy
    val_max_questions: int = 200
    val_max_new_tokens: int = 48
    mixed_precision: str | bool = "no"  # YAML reads an unquoted no as false: the same
    prompt: dict = field(default_factory=lambda: {"answer_format": "think"})

    @classmethod
    def from_params(cls, params: dict) -> GRPOConfig:
        if "loss_aggregation" in params:
            raise ParamError(
                "grpo.loss_aggregation was replaced by grpo.loss: `sequence` is `loss: grpo`, "
                f"`token` is `loss: dapo` ({PARAMS_FILE})", ["loss_aggregation"],
                "replaced by grpo.loss (sequence: grpo, token: dapo)")  # fmt: skip
        reject_unknown(cls, params, f"{PARAMS_FILE} (`grpo`)")
        d = {k: tuple(v) if k in ("tasks", "trainable") else v for k, v in params.items()}
        config = cls(**d)
        build_rewards(config.rewards, config.reward_options)  # unknown reward names fail here
        loss_named(config.loss)
        if config.advantages not in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"grpo.advantages must be one of {sorted(ADVANTAGE_ESTIMATORS)} "
                             f"({PARAMS_FILE})")  # fmt: skip
        if config.group_size < 2:
            raise ValueError(f"grpo.group_size must be >= 2 ({PARAMS_FILE})")
        if config.grad_accum < 1 or config.batch_size < 1:
            raise ValueError(f"grpo.batch_size and grpo.grad_accum must be >= 1 ({PARAMS_FILE})")
        if config.resampling not in VARIANTS:
            raise ValueError(f"grpo.resampling: {config.resampling!r}, use one of {VARIANTS} "
                             f"({PARAMS_FILE})")  # fmt: skip
        if config.lr_schedule not in (None, *SCHEDULES):
            raise ValueError(f"grpo.lr_schedule: {config.lr_schedule!r}, use one of "
                             f"{SCHEDULES} ({PARAMS_FILE})")  # fmt: skip
        return config

    @property
    def do_resample(self) -> bool:
        return self.difficulty_aware if self.resample is None else self.resample

    @property
    def do_reweight(self) -> bool:
        return self.difficulty_aware if self.reweight is None else self.reweight

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**{"answer_format": "think", **self.prompt})


def total_steps(config: GRPOConfig, n_prompts: int, processes: int = 1) -> int:
    """Optimizer steps: ``steps``, or ``epochs`` over the prompts when set.

    >>> total_steps(GRPOConfig(epochs=2, batch_size=4, grad_accum=2), 1000, processes=8)
    32
    """
    return plan_launch(config, processes, n_prompts).total_steps


def fill_rounds(resampler: Resampler, next_prompt, config: GRPOConfig, processes: int = 1):
    """The groups of one optimizer step (the global batch of all processes): ``grad_accum``
    fills of ``batch_size`` prompts per process, or one fill of EMIT's whole step."""
    plan = plan_launch(config, processes, 1)
    groups, stats = [], []
    for _ in range(plan.fills_per_step):
        g, s = resampler.fill(next_prompt, plan.prompts_per_fill)
        groups += g
        stats.append(s)
    return groups, FillStats.merge(stats)


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
    acc = make_accelerator(1, config.mixed_precision, config.seed, config.collective_timeout_s)
    lora = "lora" in config.trainable
    # the starting policy, copied before training changes it (LoRA: the base with the adapter
    # off, and a copy of the few-shot module only); moved where the policy lives
    reference = None if lora else EMITModule(copy.deepcopy(vlm)).to(acc.device).eval()
    prepare_model(vlm, config)  # type: ignore[arg-type]  (same trainable/lora fields as SFT)
    deepspeed_setup(acc, config.micro_batch_size or config.group_size, config.max_grad_norm)
    module = EMITModule(vlm)
    optimizer = make_optimizer(trainable_parameters(module), config.lr, config.weight_decay,
                               config.adam_beta2, uses_deepspeed(acc))  # fmt: skip
    plan = plan_launch(config, acc.num_processes, len(train))
    log.info("GRPO launch: %s", plan.as_dict())
    steps = plan.total_steps
    kind = config.lr_schedule or ("cosine" if config.warmup_ratio else "constant")
    schedule = lr_schedule(steps, int(config.warmup_ratio * steps), kind)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    module, optimizer, scheduler = acc.prepare(module, optimizer, scheduler)

    def clip() -> None:
        if config.max_grad_norm:
            acc.clip_grad_norm_(module.parameters(), config.max_grad_norm)

    # LoRA: the starting values of what trains besides the adapter (captured before any step)
    ref_fewshot = LoraReference.capture(vlm, acc.device) if lora else None
    ckpt = Checkpointer(acc, checkpoint_dir, config.checkpoint_every, config.keep_checkpoints,
                      run_key(config, module, len(train)))  # fmt: skip
    pos = ckpt.restore_latest() or Position()
    prompt = config.prompt_config()
    rewards = build_rewards(config.rewards, config.reward_options)
    records = [r for _, r in train.iterrows()]
    sampler = Sampler(vlm, prompt, config.temperature, config.max_new_tokens,
                      config.generate_batch, config.top_k, config.top_p)  # fmt: skip
    world = World(acc.process_index, acc.num_processes, lambda: f"step {pos.step + 1}",
                  config.collective_timeout_s)  # fmt: skip
    tok = vlm.processor.tokenizer

    def correct(record, response: Response) -> bool:
        return is_correct(response.text, record["answer"], len(record["options"]))

    resampler = Resampler(sampler, correct, config.group_size, config.do_resample,
                          config.max_resample_rounds, sample_many=sampler.many,
                          world=world, variant=config.resampling)  # fmt: skip

    def next_prompt():
        """The global prompt stream: the same on every process (the batch is decided
        globally, then shared out)."""
        order = torch.randperm(
            len(records), generator=torch.Generator().manual_seed(config.seed + pos.epoch)
        )
        if pos.batch_in_epoch >= len(order):
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
            return next_prompt()
        record = records[int(order[pos.batch_in_epoch])]
        pos.batch_in_epoch += 1
        return record

    probe = [r for _, r in val[val.type.isin(config.tasks)].head(config.probe_prompts).iterrows()]

    def probe_accuracy() -> float:
        """Share of correct sampled responses on the same val prompts: the mean accuracy
        reward, free of which training prompts a step happened to draw. Its own RNG stream,
        so training is the same with or without it."""
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            bar_ = tqdm(probe, desc="probe", unit="prompt", leave=False,
                        disable=not acc.is_main_process)  # fmt: skip
            hits = [correct(r, x) for r in bar_ for x in sampler(r, config.group_size)]
        return sum(hits) / max(1, len(hits))

    # Eval mode throughout (gradients still flow): no dropout, and the few-shot BatchNorm keeps
    # its running statistics, so the update scores completions under the policy that sampled
    # them (a group repeats one prompt, whose batch statistics would be degenerate).
    module.eval()
    samples: list[dict] = []
    history: list[dict] = list(ckpt.history)  # a resumed run's curves start at step 1
    replay_history(acc, history, "grpo")
    if probe and pos.step == 0:
        history.append({"step": 0, "probe_accuracy": probe_accuracy()})
        log_metrics(acc, {"grpo/probe_accuracy": history[-1]["probe_accuracy"]}, 0)
    bar = progress(steps, pos.step) if progress else None
    while pos.step < steps:
        t0 = time.perf_counter()
        sampler.new_step()
        groups, fill = fill_rounds(resampler, next_prompt, config, world.size)
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
            lambda: hold_sync(acc, module),
            clip,
            world,
        )
        scheduler.step()
        metrics["lr"] = scheduler.get_last_lr()[0]
        sums = world.gather(param_checksum(module))
        metrics["rank_param_spread"] = max(sums) - min(sums)  # 0: the processes agree
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
        # every completion of the step with its rewards, as TRL logs them (one file per step)
        log_jsonl(acc, [{"step": pos.step, **s} for s in step_samples],
                  f"completions/step_{pos.step:06d}.jsonl")  # fmt: skip
        if config.sample_table_every and pos.step % config.sample_table_every == 0:
            samples += [{"step": pos.step, **s} for s in step_samples[:8]]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                acc=f"{metrics.get('accuracy', 0):.2f}", kl=f"{metrics.get('kl', 0):.3f}"
            )
        if ckpt.due(pos):
            ckpt.save(pos, history)
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
    consolidate(module)  # ZeRO-3: whole parameters for the saved model
    ckpt.clear()
    return vlm, pd.DataFrame(history), samples
