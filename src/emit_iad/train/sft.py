"""EMIT stage 1: supervised warm-up on the chosen tasks, loss on the answer tokens only."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from emit_iad.mmad import protocol as p
from emit_iad.params import reject_unknown, setting
from emit_iad.train.checkpoints import Checkpointer, run_key
from emit_iad.train.common import prepare_model, validate
from emit_iad.train.harness import (
    Position,
    consolidate,
    deepspeed_setup,
    epoch_batches,
    hold_sync,
    log_metrics,
    lr_schedule,
    make_accelerator,
    make_optimizer,
    param_checksum,
    replay_history,
    spans,
    trainable_parameters,
    uses_deepspeed,
)
from emit_iad.train.targets import target
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.encoding import kept

log = logging.getLogger(__name__)
PARAMS_FILE = "conf/base/parameters_sft.yml"


@dataclass(frozen=True)
class SFTConfig:
    """EMIT stage 1, the supervised warm-up. EMIT's recipe: AD + localization, lr 1e-5,
    2 epochs, projector + soft prompt trained (conf/gpu); every default lives here."""

    tasks: tuple[str, ...] = setting(
        (p.ANOMALY_DETECTION, p.DEFECT_LOCALIZATION), "question types trained on (EMIT: AD + DL)")
    repeats: dict | None = setting(
        factory=dict, help="task -> times per epoch, for a task learned late (null: none)")
    trainable: tuple[str, ...] = setting(
        ("fewshot",), "what trains: fewshot | lora | text | full (vlm/loading.py)")
    answer_format: str = setting(
        "think", "think: <think>...</think><answer>...</answer> | plain: the letter (EMIT)")
    rationale: str = setting(
        "short", "short | options: the think part also walks through short options")
    lr: float = setting(1e-5, "learning rate (EMIT: 1e-5)")
    epochs: int = setting(2, "passes over the training questions (EMIT: 2)")
    batch_size: int = setting(8, "questions per optimizer step, per process")
    micro_batch_size: int | None = setting(
        None, "questions per forward/backward (null: the whole batch); same gradient, less "
        "memory, except that the few-shot BatchNorm normalises each micro-batch on its own")
    gradient_checkpointing: bool = setting(
        False, "recompute each layer in backward (real scale: true)")
    max_length: int | None = setting(
        None, "longest prompt + target in tokens; a longer one fails, named (null: no cap; "
        "EMIT: 10240)")
    grad_accum: int = setting(1, "batches per optimizer step")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    adam_beta2: float = setting(0.999, "AdamW beta2 (torch's default; ms-swift's, EMIT's: 0.95)")
    warmup_ratio: float = setting(0.05, "share of the steps with a linear warm-up, then cosine")
    max_grad_norm: float = setting(1.0, "gradient clipping norm")
    seed: int = setting(0, "seed of the batch order and initialisation")
    checkpoint_every: int = setting(50, "steps between resumable checkpoints")
    keep_checkpoints: int = setting(2, "checkpoints kept on disk")
    val_max_questions: int = setting(200, "val questions answered greedily per validation")
    val_max_new_tokens: int = setting(48, "token cap of those answers")
    val_every: int = setting(
        1, "epochs between validations (greedy: training is unchanged); the last always")
    mixed_precision: str | bool = setting(
        "no", "no | bf16 | fp16 (YAML reads an unquoted no as false: the same)")
    lora: dict = setting(
        factory=lambda: {"r": 8, "alpha": 16, "dropout": 0.05}, help="LoRA's r, alpha, dropout")
    prompt: dict = setting(factory=dict, help="PromptConfig fields (vlm/chat.py)")

    @classmethod
    def from_params(cls, params: dict) -> SFTConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`sft`)")
        d = dict(params)
        d["repeats"] = dict(d.get("repeats") or {})
        for key in ("tasks", "trainable"):
            if key in d:
                d[key] = tuple(d[key])
        config = cls(**d)
        if bad := set(config.tasks) - set(p.QUESTION_TYPES):
            raise ValueError(
                f"sft.tasks: unknown {sorted(bad)}; MMAD's are {list(p.QUESTION_TYPES)}"
            )
        for task, times in config.repeats.items():
            if task not in config.tasks or not isinstance(times, int) or times < 1:
                raise ValueError(f"sft.repeats: {task!r}: {times!r} must be a whole number >= 1 "
                                 f"for one of sft.tasks {list(config.tasks)} ({PARAMS_FILE})")
        return config

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(**{**self.prompt, "answer_format": self.answer_format})


def oversample(train: pd.DataFrame, repeats: dict[str, int]) -> pd.DataFrame:
    """Each question of a task in ``repeats`` that many times per epoch (the others once): more
    steps on a task that is learned late, without more epochs of the others.

    >>> q = pd.DataFrame({"id": ["a", "b", "c"], "type": ["AD", "DL", "OC"]})
    >>> list(oversample(q, {"DL": 3}).id)
    ['a', 'b', 'c', 'b', 'b']
    """
    extra = [train[train.type == task] for task, times in repeats.items() for _ in range(times - 1)]
    return pd.concat([train, *extra], ignore_index=True) if extra else train


def target_lengths(targets: Sequence[str], tokenizer) -> list[int]:
    """Tokens of each target with its end-of-turn token, as collate appends them."""
    return [len(tokenizer(t + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
            for t in targets]  # fmt: skip


def label_batch(batch, targets: Sequence[str], tokenizer,
                lengths: Sequence[int] | None = None) -> torch.Tensor:  # fmt: skip
    """Labels = input ids on each row's target tokens (the row's end, left padding), else -100.
    ``lengths``: the targets' token counts when already known (:func:`target_lengths`)."""
    ids = batch.inputs["input_ids"]
    labels = torch.full_like(ids, -100)
    for i, n in enumerate(lengths or target_lengths(targets, tokenizer)):
        labels[i, -n:] = ids[i, -n:]
    return labels


def answer_loss(module, batch, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the target tokens and their count. The head runs only on
    the rows' last positions, where the targets are (left padding): ``logits_to_keep``."""
    device = next(module.parameters()).device
    per_row = [sum(x != -100 for x in row) for row in labels.tolist()]  # host-side counts
    n = max(per_row)
    out = module(
        **batch.on(device),
        logits_to_keep=n + 1,
        fewshot_query=batch.fewshot_query,
        fewshot_template=batch.fewshot_template,
    )
    logits = out.logits[:, :-1]  # [B, n, V]: position t predicts token t + 1
    target = labels[:, -n:].to(logits.device)  # [B, n]
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
        ignore_index=-100, reduction="sum",
    )  # fmt: skip
    return loss, sum(per_row)


def train_step(module, vlm: VLM, chunk: list, config: SFTConfig, prompt: PromptConfig,
               acc) -> torch.Tensor:  # fmt: skip
    """Forward and backward of one batch in micro-batches of ``config.micro_batch_size``
    questions; each part's summed loss is divided by the batch's target tokens, so the gradient
    equals one pass over the whole batch (mean over its target tokens). Returns that mean."""
    tok = vlm.processor.tokenizer
    targets = [target(r, config.answer_format, config.rationale) for r in chunk]
    counts = target_lengths(targets, tok)
    total = sum(counts)
    parts = spans(len(chunk), config.micro_batch_size)
    mean = torch.zeros(())
    for j, (a, b) in enumerate(parts):
        batch = vlm.collate(chunk[a:b], prompt, targets=targets[a:b])
        length = batch.inputs["input_ids"].shape[1]
        if config.max_length and length > config.max_length:
            ids = [str(r.get("id", "?")) for r in chunk[a:b]]
            raise ValueError(
                f"questions {ids}: {length} tokens, over sft.max_length {config.max_length}; "
                "raise it or lower model.images.prompt.max_patches"
            )
        labels = label_batch(batch, targets[a:b], tok, counts[a:b])
        with hold_sync(acc, module) if j < len(parts) - 1 else contextlib.nullcontext():
            loss, _ = answer_loss(module, batch, labels)
            acc.backward(loss / total)
        mean = mean + loss.detach().cpu() / total
    return mean


def train_sft(
    vlm: VLM,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: SFTConfig,
    checkpoint_dir: str,
    progress: Callable | None = None,
) -> tuple[VLM, pd.DataFrame]:
    """Train in place; return the model and the per-step history (loss, lr, val metrics)."""
    train = train[train.type.isin(config.tasks)].reset_index(drop=True)
    if train.empty:
        raise ValueError(f"no training questions of types {list(config.tasks)} ({PARAMS_FILE})")
    train = oversample(train, config.repeats)
    val = val[val.type.isin(config.tasks)].head(config.val_max_questions)
    acc = make_accelerator(config.grad_accum, config.mixed_precision, config.seed)
    prepare_model(vlm, config)
    deepspeed_setup(acc, config.micro_batch_size or config.batch_size, config.max_grad_norm)
    module = EMITModule(vlm)
    optimizer = make_optimizer(trainable_parameters(module), config.lr, config.weight_decay,
                               config.adam_beta2, uses_deepspeed(acc))  # fmt: skip
    per_epoch = len(
        epoch_batches(len(train), config.batch_size, config.seed, 0, 0, acc.num_processes)
    )
    total = max(1, per_epoch * config.epochs // config.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(total, int(config.warmup_ratio * total))
    )
    module, optimizer, scheduler = acc.prepare(module, optimizer, scheduler)
    ckpt = Checkpointer(acc, checkpoint_dir, config.checkpoint_every, config.keep_checkpoints,
                      run_key(config, module, len(train)))  # fmt: skip
    pos = ckpt.restore_latest() or Position()
    prompt = config.prompt_config()
    records = [r for _, r in train.iterrows()]
    history: list[dict] = list(ckpt.history)  # a resumed run's curves start at step 1
    replay_history(acc, history, "sft")
    module.train()
    bar = progress(total, pos.step) if progress else None
    while pos.epoch < config.epochs:
        batches = epoch_batches(
            len(records),
            config.batch_size,
            config.seed,
            pos.epoch,
            acc.process_index,
            acc.num_processes,
        )
        for b in range(pos.batch_in_epoch, len(batches)):
            chunk = [records[i] for i in batches[b]]
            t0 = time.perf_counter()
            with acc.accumulate(module), kept():  # each question's encoding kept for the next epoch
                loss = train_step(module, vlm, chunk, config, prompt, acc)
                if acc.sync_gradients and config.max_grad_norm:
                    acc.clip_grad_norm_(module.parameters(), config.max_grad_norm)
                optimizer.step()
                if acc.sync_gradients:  # one schedule step per optimizer step
                    scheduler.step()
                optimizer.zero_grad()
            pos.batch_in_epoch = b + 1
            if not acc.sync_gradients:
                continue
            pos.step += 1
            loss = acc.gather(loss.detach()[None]).mean().item()
            sums = acc.gather(torch.tensor([param_checksum(module)], device=acc.device))
            row = {
                "rank_param_spread": float(sums.max() - sums.min()),  # 0: processes agree
                "step": pos.step,
                "epoch": pos.epoch,
                "loss": loss,
                "lr": scheduler.get_last_lr()[0],
                "step_s": time.perf_counter() - t0,
            }
            history.append(row)
            log_metrics(acc, {f"sft/{k}": v for k, v in row.items() if k != "step"}, pos.step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", epoch=pos.epoch)
            if ckpt.due(pos):
                ckpt.save(pos, history)
        pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        if len(val) and (pos.epoch % config.val_every == 0 or pos.epoch == config.epochs):
            metrics = validate(vlm, val, prompt, config.val_max_new_tokens)
            history.append({"step": pos.step, "epoch": pos.epoch, **metrics})
            log_metrics(acc, {f"sft/{k}": v for k, v in metrics.items()}, pos.step)
            log.info("epoch %d: %s", pos.epoch, {k: round(float(v), 1) for k, v in metrics.items()})
    if bar is not None:
        bar.close()
    acc.wait_for_everyone()
    consolidate(module)  # ZeRO-3: whole parameters for the saved model
    ckpt.clear()  # finished: the saved model replaces the checkpoints
    if not history:  # sft.epochs 0: the model passes on as it came
        log.warning("sft.epochs is 0: no SFT step; the base model passes on unchanged")
        return vlm, pd.DataFrame(columns=["step", "epoch", "loss", "lr", "step_s"])
    return vlm, pd.DataFrame(history)
