"""Training: SFT warm-up (EMIT stage 1) and difficulty-aware GRPO (stage 2) on accelerate."""
