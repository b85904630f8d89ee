"""What SFT and GRPO share besides the harness's launch and logging: the model's preparation
for training and the greedy validation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import pandas as pd
import torch
from tqdm.auto import tqdm

from emit_iad.mmad.batching import batch_order
from emit_iad.mmad.parsing import is_well_formed, parse_answer
from emit_iad.train.harness import whole_parameters
from emit_iad.train.world import is_main_process
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.loading import add_lora, enable_checkpointing, set_trainable


class TrainsParts(Protocol):
    """The fields of a training config that say what trains (SFT's and GRPO's have them)."""

    trainable: Sequence[str]
    lora: dict
    gradient_checkpointing: bool


def prepare_model(vlm: VLM, config: TrainsParts) -> list[str]:
    """LoRA where asked, the trainable parts, gradient checkpointing; returns what trains."""
    if "lora" in config.trainable and not hasattr(vlm.model, "peft_config"):
        add_lora(vlm, **config.lora)
    names = set_trainable(vlm, config.trainable)
    if config.gradient_checkpointing:
        enable_checkpointing(vlm)
    return names


@torch.no_grad()
def validate(
    vlm: VLM,
    questions: pd.DataFrame,
    prompt: PromptConfig,
    max_new_tokens: int,
    batch_size: int = 16,
) -> dict[str, float]:
    """Accuracy per question type and the share of well-formed replies (think format)."""
    if questions.empty:
        return {}
    was_training = vlm.model.training
    vlm.model.eval()
    if vlm.fewshot is not None:
        vlm.fewshot.eval()
    records = [r for _, r in questions.iterrows()]
    records = [records[i] for i in batch_order(records)]  # alike questions batched together
    rows = []
    tok = vlm.processor.tokenizer
    starts = range(0, len(records), batch_size)
    with whole_parameters(vlm):  # ZeRO-3: generate() on each process alone, gathered once
        for i in tqdm(starts, desc="validation", unit="batch", leave=False,
                      disable=not is_main_process()):  # fmt: skip
            chunk = records[i : i + batch_size]
            texts = vlm.generate(
                vlm.collate(chunk, prompt),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            for r, t in zip(chunk, texts, strict=True):
                rows.append(
                    {
                        "type": r["type"],
                        "correct": parse_answer(t, list(r["options"])) == r["answer"],
                        "well_formed": is_well_formed(t),
                    }
                )
    vlm.model.train(was_training)
    if vlm.fewshot is not None:
        vlm.fewshot.train(was_training)
    df = pd.DataFrame(rows)
    out = {
        f"val/{t.lower().replace(' ', '_')}": 100 * g.correct.mean() for t, g in df.groupby("type")
    }
    out["val/accuracy"] = 100 * df.correct.mean()
    if prompt.answer_format == "think":
        out["val/well_formed"] = 100 * df.well_formed.mean()
    return out
