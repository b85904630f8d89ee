"""One SFT and one GRPO run of the tiny model, started by ``accelerate launch`` (DeepSpeed or
plain DDP over gloo) from tests/train/test_deepspeed.py.

    python ds_worker.py <folder>   # reads <folder>/base and <folder>/train.parquet

The main process writes <folder>/result-<tag>.json: the learning rate and rank spread of every
step, and a checksum of the trained parameters (gathered under ZeRO-3).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import torch


def main(folder: Path, tag: str) -> None:
    from emit_iad.train.grpo.loop import GRPOConfig, train_grpo
    from emit_iad.train.sft import SFTConfig, train_sft
    from emit_iad.vlm.bundle import VLM

    torch.manual_seed(0)
    train = pd.read_parquet(folder / "train.parquet")
    rank = int(os.environ.get("RANK", "0"))
    sft = SFTConfig(tasks=("Anomaly Detection",), trainable=("text", "fewshot"), lr=1e-3,
                    epochs=1, batch_size=4, micro_batch_size=2, grad_accum=2,
                    answer_format="plain", warmup_ratio=0.0, max_grad_norm=1.0,
                    checkpoint_every=0, val_max_questions=0, repeats={})  # fmt: skip
    vlm, sft_history = train_sft(VLM.load(folder / "base"), train, train.iloc[:0], sft,
                                 str(folder / f"ck-sft-{tag}"))  # fmt: skip
    vlm.save(folder / f"sft-{tag}")  # whole parameters, also after ZeRO-3
    grpo = GRPOConfig(tasks=("Anomaly Detection",), trainable=("text", "fewshot"), steps=2,
                      group_size=4, batch_size=1, micro_batch_size=2, max_new_tokens=6,
                      lr=1e-4, beta=0.005, probe_prompts=0, val_max_questions=0,
                      checkpoint_every=0, rewards={"accuracy": 1.0, "format": 1.0})  # fmt: skip
    vlm, grpo_history, _ = train_grpo(vlm, train, train.iloc[:0], grpo,
                                      str(folder / f"ck-grpo-{tag}"))  # fmt: skip
    saved = VLM.load(folder / f"sft-{tag}")
    if rank == 0:
        result = {
            "sft_lr": sft_history.dropna(subset=["loss"]).lr.tolist(),
            "sft_spread": sft_history.rank_param_spread.dropna().tolist(),
            "sft_saved_sum": float(sum(p.double().sum() for p in saved.model.parameters())),
            "base_sum": float(sum(p.double().sum() for p in
                                  VLM.load(folder / "base").model.parameters())),
            "grpo_steps": int(grpo_history.step.max()),
            "grpo_spread": grpo_history.rank_param_spread.dropna().tolist(),
            "processes": int(os.environ.get("WORLD_SIZE", "1")),
        }
        (folder / f"result-{tag}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
