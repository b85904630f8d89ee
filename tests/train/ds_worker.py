"""One SFT and one GRPO run of the tiny model, started by ``accelerate launch`` (DeepSpeed or
plain DDP over gloo) from tests/train/test_deepspeed.py.

    python ds_worker.py <folder>   # reads <folder>/base and <folder>/train.parquet

The main process saves the SFT model to <folder>/sft-<tag> (whole parameters, gathered under
ZeRO-3) and writes <folder>/result-<tag>.json: the learning rate and rank spread of every step.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import torch


def main(folder: Path, tag: str) -> None:
    from accelerate.state import AcceleratorState, PartialState

    from emit_iad.train.grpo.config import GRPOConfig
    from emit_iad.train.grpo.trainer import train_grpo
    from emit_iad.train.harness import end_launch
    from emit_iad.train.sft import SFTConfig, train_sft
    from emit_iad.vlm.loading import load_vlm

    torch.manual_seed(0)
    train = pd.read_parquet(folder / "train.parquet")
    rank = int(os.environ.get("RANK", "0"))
    # 8 questions, 2 a batch on each of 2 processes, in micro-batches of 1, 2 batches a step:
    # one optimizer step per epoch
    sft = SFTConfig(tasks=("Anomaly Detection",), trainable=("text", "fewshot"), lr=1e-3,
                    epochs=2, batch_size=2, micro_batch_size=1, grad_accum=2,
                    answer_format="plain", warmup_ratio=0.0, max_grad_norm=1.0,
                    checkpoint_every=0, val_max_questions=0, repeats={})  # fmt: skip
    vlm, sft_history = train_sft(load_vlm(folder / "base"), train, train.iloc[:0], sft,
                                 str(folder / f"ck-sft-{tag}"))  # fmt: skip
    # every process calls save: rank 0 writes (whole parameters, also after ZeRO-3), the others
    # skip it and wait here before loading it back
    vlm.save(folder / f"sft-{tag}")
    PartialState().wait_for_everyone()
    grpo = GRPOConfig(tasks=("Anomaly Detection",), trainable=("text", "fewshot"), steps=2,
                      group_size=4, batch_size=1, micro_batch_size=2, max_new_tokens=6,
                      lr=1e-4, beta=0.005, probe_prompts=0, val_max_questions=0,
                      difficulty_aware=False,
                      checkpoint_every=0, rewards={"accuracy": 1.0, "format": 1.0})  # fmt: skip
    # GRPO starts from the saved SFT model, as the pipeline's catalog loads it
    vlm, grpo_history, _ = train_grpo(load_vlm(folder / f"sft-{tag}"), train, train.iloc[:0], grpo,
                                      str(folder / f"ck-grpo-{tag}"))  # fmt: skip
    if rank == 0:  # (the test loads the saved model: a load here would be a ZeRO-3 collective)
        result = {
            "sft_lr": sft_history.dropna(subset=["loss"]).lr.tolist(),
            "sft_spread": sft_history.rank_param_spread.dropna().tolist(),
            "grpo_steps": int(grpo_history.step.max()),
            "grpo_spread": grpo_history.rank_param_spread.dropna().tolist(),
            "grpo_update": bool((grpo_history.get("completion_tokens", 0) > 0).any()),
            "processes": int(os.environ.get("WORLD_SIZE", "1")),
            "engine": AcceleratorState().distributed_type.value,
        }
        (folder / f"result-{tag}.json").write_text(json.dumps(result))
    end_launch()  # as the pipeline's after_pipeline_run hook does


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
