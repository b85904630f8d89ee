"""Batched evaluation vs MMAD's one-question-per-generate loop, same model, same questions.

Like for like: both answer the same questions with the same greedy settings; one warm-up batch
of each runs first (not timed); then ``--rounds`` rounds, the order alternating (loop first,
then batched first, ...); the figure per side is the median over rounds. Run by hand after
`dvc repro` (it needs data/06_models/<model> and the test benchmark):

    python benchmarks/eval_batching.py [--model sft] [--questions 96] [--batch-size 64] [--rounds 3]

Prints questions/s of both, their ratio, and whether the greedy answers are identical.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from emit_iad.evaluate.runner import load_benchmark
from emit_iad.mmad.parsing import parse_answer
from emit_iad.vlm.answering import LocalAnswerer
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.loading import load_vlm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="sft")
    ap.add_argument("--benchmark", default="data/05_model_input/test_benchmark")
    ap.add_argument("--questions", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)

    questions, _ = load_benchmark(f"{args.benchmark}/mmad.json", args.benchmark)
    records = [r for _, r in questions.head(args.questions).iterrows()]
    vlm = load_vlm(f"data/06_models/{args.model}")
    prompt = PromptConfig(answer_format="think")

    def run(batch_size: int, items) -> tuple[list[str], float]:
        answerer = LocalAnswerer(vlm, prompt, batch_size, args.max_new_tokens)
        start = time.perf_counter()
        out = []
        for i in range(0, len(items), batch_size):
            out += answerer.answer(items[i : i + batch_size])
        return out, len(items) / (time.perf_counter() - start)

    sides = {"loop": 1, "batched": args.batch_size}  # MMAD's scripts: one question per generate
    for size in sides.values():  # warm-up, not timed
        run(size, records[: min(size, 4)])
    speed, texts = {k: [] for k in sides}, {}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            texts[name], qps = run(sides[name], records)
            speed[name].append(qps)
    loop_qps, batched_qps = (statistics.median(speed[k]) for k in sides)
    letters = {k: [parse_answer(t, list(r["options"])) for t, r in zip(texts[k], records,
                                                                     strict=True)]
               for k in sides}  # fmt: skip
    same_text = sum(a == b for a, b in zip(texts["loop"], texts["batched"], strict=True))
    same_letter = sum(a == b for a, b in zip(letters["loop"], letters["batched"], strict=True))
    print(f"model {args.model}, {len(records)} questions, max_new_tokens {args.max_new_tokens}, "
          f"{args.rounds} rounds after a warm-up, order alternating; medians")  # fmt: skip
    print(f"one per generate : {loop_qps:7.2f} questions/s  (rounds: "
          f"{', '.join(f'{x:.2f}' for x in speed['loop'])})")  # fmt: skip
    print(f"batched ({args.batch_size:>3})    : {batched_qps:7.2f} questions/s  (rounds: "
          f"{', '.join(f'{x:.2f}' for x in speed['batched'])})")  # fmt: skip
    print(f"speed-up         : {batched_qps / loop_qps:7.2f}x")
    print(f"identical greedy texts {same_text}/{len(records)}, identical parsed answers "
          f"{same_letter}/{len(records)}")


if __name__ == "__main__":
    main()
