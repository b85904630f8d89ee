"""Difficulty-aware GRPO (EMIT stage 2): rewards, advantages, response resampling, loss."""
