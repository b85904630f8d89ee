"""The ablation stage: base, SFT, SFT + GRPO, SFT + difficulty-aware GRPO on one benchmark."""
