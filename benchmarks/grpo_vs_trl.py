"""One GRPO step of emit-iad's loop (difficulty_aware off) vs TRL's GRPOTrainer, side by side.

Same tiny InternVL (the SFT model, few-shot module off for both), same prompts, G, max new tokens
and batch. TRL is not a project dependency: `pip install "trl==1.16.*"` first. Run after
`dvc repro` (it needs data/06_models/sft and the question tables):

    python benchmarks/grpo_vs_trl.py [--steps 5] [--group 8] [--tokens 24] [--prompts 2]

Prints seconds per step of both and their ratio, and the cost of EMIT's response resampling
(difficulty_aware on) against the share of difficult prompts.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
import torch


def ours(model_dir, data, args, difficulty_aware: bool):
    from accelerate.state import AcceleratorState

    from emit_iad.train.grpo.loop import GRPOConfig, train_grpo
    from emit_iad.vlm.bundle import VLM

    AcceleratorState._reset_state(reset_partial_state=True)  # TRL's Trainer set it up its way

    vlm = VLM.load(model_dir)
    vlm.fewshot = None
    config = GRPOConfig(
        tasks=("Anomaly Detection",),
        group_size=args.group,
        max_new_tokens=args.tokens,
        batch_size=args.prompts,
        steps=args.steps,
        lr=1e-5,
        beta=0.0,
        checkpoint_every=0,
        val_max_questions=0,
        trainable=("full",),
        difficulty_aware=difficulty_aware,
        rewards={"accuracy": 1.0, "format": 1.0},
    )
    with tempfile.TemporaryDirectory() as tmp:
        _, history, _ = train_grpo(vlm, data, data.iloc[:0], config, tmp)
    return history


def trl_run(model_dir, data, args):
    from datasets import Dataset
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from emit_iad.train.grpo.rewards import REWARDS
    from emit_iad.vlm.chat import PromptConfig, build_messages

    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    rows = []
    for _, r in data.iterrows():
        messages, paths = build_messages(r, PromptConfig(answer_format="think"))
        messages[0]["content"] = [
            {"type": "text", "text": messages[0]["content"]}
        ]  # arrow: one type
        rows.append(
            {
                "prompt": messages,
                "images": [Image.open(p).convert("RGB") for p in paths],
                "answer": r["answer"],
                "options": list(r["options"]),
            }
        )
    dataset = Dataset.from_list(rows)
    acc, fmt = REWARDS["accuracy"](), REWARDS["format"]()

    def reward_acc(completions, answer, options, **_):
        return acc(
            [c[0]["content"] if isinstance(c, list) else c for c in completions], answer, options
        )

    def reward_fmt(completions, **_):
        return fmt([c[0]["content"] if isinstance(c, list) else c for c in completions])

    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp,
            num_generations=args.group,
            max_completion_length=args.tokens,
            per_device_train_batch_size=args.group * args.prompts,
            max_steps=args.steps,
            learning_rate=1e-5,
            beta=0.0,
            use_cpu=True,
            report_to=[],
            logging_steps=1,
            save_strategy="no",
            temperature=1.0,
        )
        trainer = GRPOTrainer(
            model=model,
            processing_class=processor,
            reward_funcs=[reward_acc, reward_fmt],
            args=config,
            train_dataset=dataset,
        )
        start = time.perf_counter()
        trainer.train()
        return (time.perf_counter() - start) / args.steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="data/06_models/sft")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = pd.read_parquet("data/05_model_input/train_questions.parquet")
    data = data[data.type == "Anomaly Detection"].head(args.steps * args.prompts * 4)

    plain = ours(args.model, data, args, difficulty_aware=False)
    ours_s = plain.step_s.iloc[1:].mean()  # the first step warms up
    trl_s = trl_run(args.model, data, args)
    aware = ours(args.model, data, args, difficulty_aware=True)
    print(
        f"G={args.group}, {args.prompts} prompts/step, {args.tokens} new tokens, {args.steps} steps"
    )
    print(f"emit-iad GRPO (difficulty_aware off): {ours_s:6.3f} s/step")
    print(f"TRL GRPOTrainer                     : {trl_s:6.3f} s/step")
    print(f"ratio TRL / emit-iad                : {trl_s / ours_s:6.2f}x")
    print(
        f"difficulty-aware on                 : {aware.step_s.iloc[1:].mean():6.3f} s/step, "
        f"difficult share {aware.difficult_before.mean():.2f}, "
        f"resample rounds/step {aware.resample_rounds.mean():.1f}"
    )


if __name__ == "__main__":
    main()
