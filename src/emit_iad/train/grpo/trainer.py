"""Difficulty-aware GRPO, EMIT stage 2, as one trainer. A step reads as the algorithm:

1. :meth:`GRPOTrainer.rollout`: G responses per prompt from the current policy, and EMIT's
   response resampling, which fills the batch with groups that hold a correct response;
2. :meth:`GRPOTrainer.score`: weighted rewards, advantages by the configured estimator with
   EMIT's difficulty reweighting, this process's share of the groups;
3. :meth:`GRPOTrainer.update`: μ passes of the configured policy loss with a k3 KL to the
   reference policy;
4. :meth:`GRPOTrainer.log`: metrics, completions, checkpoints.

The extension points are registries: policy losses (``loss.py``), advantage estimators
(``advantages.py``), rewards (``rewards.py``), resampling variants (``resampling.py``); the
sampler (``rollout.py``) is the seam for a vLLM backend. The loop is the project's own because
no library exposes hooks for resampling and advantage reweighting (TRL's GRPOTrainer has no
dynamic sampling).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable

import pandas as pd
import torch
from tqdm.auto import tqdm

from emit_iad.train.checkpoints import Checkpointer, run_key
from emit_iad.train.common import prepare_model, validate
from emit_iad.train.grpo.config import PARAMS_FILE, GRPOConfig
from emit_iad.train.grpo.plan import plan_launch
from emit_iad.train.grpo.resampling import FillStats, Group, Resampler
from emit_iad.train.grpo.rewards import build_rewards, is_correct
from emit_iad.train.grpo.rollout import LoraReference, Response, Sampler
from emit_iad.train.grpo.update import (
    Policy,
    ScoredGroup,
    Stepper,
    even_share,
    mean_loss_metrics,
    policy_update,
    process_share,
    score_groups,
)
from emit_iad.train.harness import (
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
from emit_iad.train.world import World
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.tiny import FEWSHOT_TOKEN

log = logging.getLogger(__name__)


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


class GRPOTrainer:
    """The accelerator, policy, reference, optimizer, sampler, resampler and world of one GRPO
    run. ``train()`` trains the model in place and returns it with the per-step history and a
    table of sample completions."""

    def __init__(self, vlm: VLM, train: pd.DataFrame, val: pd.DataFrame, config: GRPOConfig,
                 checkpoint_dir: str):  # fmt: skip
        train = train[train.type.isin(config.tasks)].reset_index(drop=True)
        check_inputs(vlm, train, config)
        self.vlm, self.config = vlm, config
        self.val, self.validates = val[val.type.isin(config.tasks)], len(val) > 0
        acc = make_accelerator(1, config.mixed_precision, config.seed, config.collective_timeout_s)
        self.acc = acc
        lora = "lora" in config.trainable
        # the starting policy, copied before training changes it (LoRA: the base with the
        # adapter off, and a copy of the few-shot module only); moved where the policy lives
        reference = None if lora else EMITModule(copy.deepcopy(vlm)).to(acc.device).eval()
        prepare_model(vlm, config)
        deepspeed_setup(acc, config.micro_batch_size or config.group_size, config.max_grad_norm)
        module = EMITModule(vlm)
        optimizer = make_optimizer(trainable_parameters(module), config.lr, config.weight_decay,
                                   config.adam_beta2, uses_deepspeed(acc))  # fmt: skip
        self.plan = plan_launch(config, acc.num_processes, len(train))
        log.info("GRPO launch: %s", self.plan.as_dict())
        steps = self.plan.total_steps
        kind = config.lr_schedule or ("cosine" if config.warmup_ratio else "constant")
        schedule = lr_schedule(steps, int(config.warmup_ratio * steps), kind)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        module, optimizer, self.scheduler = acc.prepare(module, optimizer, scheduler)
        # LoRA: the starting values of what trains besides the adapter (before any step)
        ref_fewshot = LoraReference.capture(vlm, acc.device) if lora else None
        self.policy = Policy(module, vlm, reference, ref_fewshot if reference is None else None)
        self.stepper = Stepper(optimizer, acc.backward, lambda: hold_sync(acc, module),
                               self._clip)  # fmt: skip
        self.ckpt = Checkpointer(acc, checkpoint_dir, config.checkpoint_every,
                                 config.keep_checkpoints, run_key(config, module, len(train)))
        self.pos = self.ckpt.restore_latest() or Position()
        self.prompt = config.prompt_config()
        self.rewards = build_rewards(config.rewards, config.reward_options)
        self.records = [r for _, r in train.iterrows()]
        self.sampler = Sampler(vlm, self.prompt, config.temperature, config.max_new_tokens,
                               config.generate_batch, config.top_k, config.top_p)  # fmt: skip
        self.world = World(acc.process_index, acc.num_processes,
                           lambda: f"step {self.pos.step + 1}", config.collective_timeout_s)
        self.resampler = Resampler(self.sampler, self.correct, config.group_size,
                                   config.do_resample, config.max_resample_rounds,
                                   sample_many=self.sampler.many, world=self.world,
                                   variant=config.resampling)  # fmt: skip
        self.probe = [r for _, r in self.val.head(config.probe_prompts).iterrows()]
        self.history: list[dict] = list(self.ckpt.history)  # a resumed run's curves go on
        self.samples: list[dict] = []

    # -- the pieces a step is made of ----------------------------------------------------
    def correct(self, record, response: Response) -> bool:
        return is_correct(response.text, record["answer"], len(record["options"]))

    def next_prompt(self):
        """The global prompt stream: the same on every process (the batch is decided
        globally, then shared out)."""
        pos, seed = self.pos, self.config.seed
        order = torch.randperm(
            len(self.records), generator=torch.Generator().manual_seed(seed + pos.epoch)
        )
        if pos.batch_in_epoch >= len(order):
            pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
            return self.next_prompt()
        record = self.records[int(order[pos.batch_in_epoch])]
        pos.batch_in_epoch += 1
        return record

    def rollout(self) -> tuple[list[Group], FillStats]:
        """The step's groups (the global batch), resampled as the config says."""
        self.sampler.new_step()
        groups, fill = fill_rounds(self.resampler, self.next_prompt, self.config, self.world.size)
        if not groups:
            log.warning("step %d: no prompt had a correct response after %d resampling rounds; "
                        "nothing to learn from (is the starting model trained?)",
                        self.pos.step + 1, self.config.max_resample_rounds)  # fmt: skip
        return groups, fill

    def score(self, groups: list[Group]) -> tuple[list[ScoredGroup], dict, list[dict]]:
        """Rewards and advantages of all the groups (their metrics: the global batch's), and
        this process's share of them as update inputs, as many as every other process's."""
        own, build, per_process = process_share(len(groups), self.world)
        pad_id = self.vlm.processor.tokenizer.pad_token_id
        scored, metrics, samples = score_groups(groups, self.rewards, self.config, self.sampler,
                                                pad_id, build)  # fmt: skip
        return even_share(scored, bool(own), per_process), metrics, samples

    def update(self, scored: list[ScoredGroup]) -> dict[str, float]:
        """The policy update on this process's share; the loss metrics averaged over all."""
        losses = policy_update(self.policy, scored, self.config, self.stepper)
        metrics = mean_loss_metrics(losses, self.world)
        self.scheduler.step()
        metrics["lr"] = self.scheduler.get_last_lr()[0]
        sums = self.world.gather(param_checksum(self.policy.module))
        metrics["rank_param_spread"] = max(sums) - min(sums)  # 0: the processes agree
        return metrics

    def log(self, metrics: dict, samples: list[dict]) -> None:
        """The step's row of the history, MLflow metrics, every completion (as TRL logs them,
        one file per step), the sample table, and a checkpoint when due."""
        step = self.pos.step
        self.history.append({"step": step, **metrics})
        log_metrics(self.acc, {f"grpo/{k}": v for k, v in metrics.items()}, step)
        log_jsonl(self.acc, [{"step": step, **s} for s in samples],
                  f"completions/step_{step:06d}.jsonl")  # fmt: skip
        every = self.config.sample_table_every
        if every and step % every == 0:
            self.samples += [{"step": step, **s} for s in samples[:8]]
        if self.ckpt.due(self.pos):
            self.ckpt.save(self.pos, self.history)

    def step(self) -> dict:
        """One optimizer step: rollout → score → update → log."""
        t0 = time.perf_counter()
        groups, fill = self.rollout()
        t1 = time.perf_counter()
        scored, metrics, samples = self.score(groups)
        metrics.update(self.update(scored))
        metrics["rollout_s"], metrics["update_s"] = t1 - t0, time.perf_counter() - t1
        self.pos.step += 1
        elapsed = time.perf_counter() - t0
        metrics.update(fill.as_metrics(), step_s=elapsed,
                       tokens_per_s=metrics.get("completion_tokens", 0.0) / elapsed)  # fmt: skip
        self.log(metrics, samples)
        return metrics

    # -- around the steps -----------------------------------------------------------------
    def probe_accuracy(self) -> float:
        """Share of correct sampled responses on the same val prompts: the mean accuracy
        reward, free of which training prompts a step happened to draw. Its own RNG stream,
        so training is the same with or without it."""
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            bar = tqdm(self.probe, desc="probe", unit="prompt", leave=False,
                       disable=not self.acc.is_main_process)  # fmt: skip
            hits = [self.correct(r, x) for r in bar
                    for x in self.sampler(r, self.config.group_size)]  # fmt: skip
        return sum(hits) / max(1, len(hits))

    def _probe_row(self) -> None:
        self.history.append({"step": self.pos.step, "probe_accuracy": self.probe_accuracy()})
        log_metrics(self.acc, {"grpo/probe_accuracy": self.history[-1]["probe_accuracy"]},
                    self.pos.step)  # fmt: skip

    def _clip(self) -> None:
        if self.config.max_grad_norm:
            self.acc.clip_grad_norm_(self.policy.module.parameters(), self.config.max_grad_norm)

    def train(self, progress: Callable | None = None) -> tuple[VLM, pd.DataFrame, list[dict]]:
        """Every step to the plan's total (from a checkpoint's, when one is kept), the probes
        before and after, the final validation; returns the model, history and samples."""
        config, pos, steps = self.config, self.pos, self.plan.total_steps
        # Eval mode throughout (gradients still flow): no dropout, and the few-shot BatchNorm
        # keeps its running statistics, so the update scores completions under the policy that
        # sampled them (a group repeats one prompt, whose batch statistics would be degenerate)
        self.policy.module.eval()
        replay_history(self.acc, self.history, "grpo")
        if self.probe and pos.step == 0:
            self._probe_row()
        bar = progress(steps, pos.step) if progress else None
        while pos.step < steps:
            metrics = self.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{metrics.get('accuracy', 0):.2f}",
                                kl=f"{metrics.get('kl', 0):.3f}")  # fmt: skip
        if bar is not None:
            bar.close()
        if self.probe:
            self._probe_row()
        if self.validates:
            final = validate(self.vlm, self.val.head(config.val_max_questions), self.prompt,
                             config.val_max_new_tokens)  # fmt: skip
            self.history.append({"step": pos.step, **final})
            log_metrics(self.acc, {f"grpo/{k}": v for k, v in final.items()}, pos.step)
        self.acc.wait_for_everyone()
        consolidate(self.policy.module)  # ZeRO-3: whole parameters for the saved model
        self.ckpt.clear()
        return self.vlm, pd.DataFrame(self.history), self.samples


def train_grpo(vlm: VLM, train: pd.DataFrame, val: pd.DataFrame, config: GRPOConfig,
               checkpoint_dir: str, progress: Callable | None = None,
               ) -> tuple[VLM, pd.DataFrame, list[dict]]:  # fmt: skip
    """Train in place; returns the model, per-step metrics and sample completions."""
    return GRPOTrainer(vlm, train, val, config, checkpoint_dir).train(progress)
