"""GRPO steps of emit-iad's loop (difficulty_aware off) vs TRL's GRPOTrainer, timed alike.

Like for like:
- the same tiny InternVL (the SFT model, few-shot module off for both), prompts, G, completion
  tokens, prompts per step, learning rate, beta 0, one update per generation (mu 1);
- the same sampling: temperature 1.0, top_p 1.0, no top_k;
- the same clock: each step from its start to the end of its update, read inside each trainer
  (this loop's own ``step_s``; a TRL callback from ``on_step_begin`` to ``on_step_end``), so the
  setup (model load, dataset, trainer construction) is excluded on both sides;
- the same warm-up: the first ``--warmup`` steps of every run are dropped on both sides;
- the order alternates between rounds (ours first, then TRL first, ...), each run in a fresh
  model; the figure per side is the median over all kept steps of all rounds.

Sampling makes the replies' lengths differ between the two, so time per 1,000 completion tokens
is printed beside time per step. TRL is not a project dependency: `pip install "trl==1.16.*"`
first. Run after `dvc repro` (it needs data/06_models/sft and the question tables):

    python benchmarks/grpo_vs_trl.py [--steps 6] [--warmup 2] [--rounds 3] [--group 8] \
        [--tokens 40] [--prompts 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import pandas as pd
import torch


def ours(model_dir, data, args, difficulty_aware: bool = False) -> pd.DataFrame:
    """Per kept step: seconds and completion tokens."""
    from accelerate.state import AcceleratorState

    from emit_iad.train.grpo.config import GRPOConfig
    from emit_iad.train.grpo.trainer import train_grpo
    from emit_iad.vlm.loading import load_vlm

    AcceleratorState._reset_state(reset_partial_state=True)  # TRL's Trainer set it up its way
    vlm = load_vlm(model_dir)
    vlm.fewshot = None
    config = GRPOConfig(
        tasks=("Anomaly Detection",), group_size=args.group, max_new_tokens=args.tokens,
        batch_size=args.prompts, steps=args.warmup + args.steps, lr=1e-5, beta=0.0, mu=1,
        temperature=1.0, checkpoint_every=0, val_max_questions=0, probe_prompts=0,
        trainable=("full",), difficulty_aware=difficulty_aware,
        rewards={"accuracy": 1.0, "format": 1.0}, seed=args.seed,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _, history, _ = train_grpo(vlm, data, data.iloc[:0], config, tmp)
    steps = history.dropna(subset=["step_s"]).sort_values("step")
    kept = steps[steps.step > args.warmup]
    return pd.DataFrame({"seconds": kept.step_s.to_numpy(),
                         "tokens": kept.completion_tokens.to_numpy(),
                         "difficult": kept.difficult_before.to_numpy(),
                         "rounds": kept.resample_rounds.to_numpy()})  # fmt: skip


def trl_run(model_dir, data, args) -> pd.DataFrame:
    """Per kept step: seconds (inside the trainer) and completion tokens (TRL's own log)."""
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from emit_iad.train.grpo.rewards import REWARDS
    from emit_iad.vlm.chat import PromptConfig, build_messages

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    rows = []
    for _, r in data.iterrows():
        messages, paths = build_messages(r, PromptConfig(answer_format="think"))
        messages[0]["content"] = [{"type": "text", "text": messages[0]["content"]}]  # one type
        rows.append({"prompt": messages, "answer": r["answer"], "options": list(r["options"]),
                     "images": [Image.open(p).convert("RGB") for p in paths]})  # fmt: skip
    dataset = Dataset.from_list(rows)
    acc, fmt = REWARDS["accuracy"](), REWARDS["format"]()

    def text(completions):
        return [c[0]["content"] if isinstance(c, list) else c for c in completions]

    def reward_acc(completions, answer, options, **_):
        return acc(text(completions), answer, options)

    def reward_fmt(completions, **_):
        return fmt(text(completions))

    class Clock(TrainerCallback):
        def __init__(self):
            self.seconds, self.tokens, self._t0 = [], [], 0.0

        def on_step_begin(self, *a, **k):
            self._t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.seconds.append(time.perf_counter() - self._t0)

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "completions/mean_length" in logs:
                self.tokens.append(logs["completions/mean_length"] * args.group * args.prompts)

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, num_generations=args.group, max_completion_length=args.tokens,
            per_device_train_batch_size=args.group * args.prompts,
            max_steps=args.warmup + args.steps, learning_rate=1e-5, beta=0.0,
            num_iterations=1, temperature=1.0, top_p=1.0, top_k=0, use_cpu=True, report_to=[],
            logging_steps=1, save_strategy="no", seed=args.seed,
        )  # fmt: skip
        trainer = GRPOTrainer(model=model, processing_class=processor,
                              reward_funcs=[reward_acc, reward_fmt], args=config,
                              train_dataset=dataset, callbacks=[clock])  # fmt: skip
        trainer.train()
    n = len(clock.seconds)
    tokens = clock.tokens[:n] + [float("nan")] * (n - len(clock.tokens))
    return pd.DataFrame({"seconds": clock.seconds, "tokens": tokens}).iloc[args.warmup :]


def summary(name: str, runs: list[pd.DataFrame]) -> tuple[float, float]:
    steps = pd.concat(runs, ignore_index=True)
    per_step = statistics.median(steps.seconds)
    per_1k = statistics.median((steps.seconds / steps.tokens * 1000).dropna())
    per_round = ", ".join(f"{statistics.median(r.seconds):.3f}" for r in runs)
    print(f"{name:<38}: {per_step:6.3f} s/step (rounds: {per_round}), {per_1k:6.3f} s per "
          f"1k completion tokens, {steps.tokens.mean():5.0f} tokens/step")  # fmt: skip
    return per_step, per_1k


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="data/06_models/sft")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of a run")
    ap.add_argument("--rounds", type=int, default=3, help="runs per side, order alternating")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = pd.read_parquet("data/05_model_input/train_questions.parquet")
    steps = args.warmup + args.steps
    data = data[data.type == "Anomaly Detection"].head(steps * args.prompts * 2)

    mine, theirs = [], []
    for r in range(args.rounds):
        order = [("ours", mine), ("trl", theirs)]
        for side, out in order if r % 2 == 0 else order[::-1]:
            out.append(ours(args.model, data, args) if side == "ours" else
                       trl_run(args.model, data, args))  # fmt: skip
    aware = ours(args.model, data, args, difficulty_aware=True)
    print(f"G={args.group}, {args.prompts} prompts/step, up to {args.tokens} new tokens; "
          f"{args.rounds} rounds x {args.steps} steps after {args.warmup} warm-up steps, "
          "order alternating; medians")  # fmt: skip
    ours_s, ours_k = summary("emit-iad GRPO (difficulty_aware off)", mine)
    trl_s, trl_k = summary("TRL GRPOTrainer", theirs)
    print(f"ratio TRL / emit-iad: {trl_s / ours_s:.2f}x per step, "
          f"{trl_k / ours_k:.2f}x per completion token")  # fmt: skip
    summary("emit-iad difficulty-aware on", [aware])
    print(f"difficult share {aware.difficult.mean():.2f}, "
          f"resample rounds/step {aware.rounds.mean():.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
