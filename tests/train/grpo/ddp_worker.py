"""Run by `accelerate launch --cpu --num_processes 2` from test_ddp.py: a few GRPO steps, then
each rank writes a checksum of its parameters."""

import sys
from pathlib import Path

import pandas as pd
import torch

from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.trainer import train_grpo
from emit_iad.vlm.loading import load_vlm


def main(model_dir: str, questions: str, out: str) -> None:
    torch.set_num_threads(1)
    data = pd.read_parquet(questions)
    config = GRPOConfig(tasks=("Anomaly Detection", "Defect Localization"), group_size=4,
                        max_new_tokens=8, batch_size=2, steps=2, lr=1e-3, checkpoint_every=0,
                        val_max_questions=0, trainable=("full", "fewshot"), difficulty_aware=False)  # fmt: skip
    vlm, history, _ = train_grpo(load_vlm(model_dir), data, data.iloc[:0], config, f"{out}/ckpt")
    import accelerate

    rank = accelerate.PartialState().process_index
    with torch.no_grad():
        total = sum(float(p.double().sum()) for p in vlm.model.parameters())
        total += sum(float(p.double().sum()) for p in vlm.fewshot.parameters())
    world = accelerate.PartialState().num_processes
    Path(out, f"rank{rank}.txt").write_text(f"{total!r} {len(history)} {world}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
