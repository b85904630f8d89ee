"""Batched evaluation vs MMAD's one-question-per-generate loop, same model, same questions.

Run by hand after `dvc repro` (it needs data/06_models/<model> and the test benchmark):

    python benchmarks/eval_batching.py [--model base] [--questions 96] [--batch-size 16]

Prints questions/s of both, their ratio, and whether the greedy answers are identical.
"""

from __future__ import annotations

import argparse
import time

import torch

from emit_iad.evaluate.answerers import LocalAnswerer
from emit_iad.evaluate.runner import load_benchmark
from emit_iad.mmad.parsing import parse_answer
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.chat import PromptConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="base")
    ap.add_argument("--benchmark", default="data/05_model_input/test_benchmark")
    ap.add_argument("--questions", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(2)

    questions, _ = load_benchmark(f"{args.benchmark}/mmad.json", args.benchmark)
    records = [r for _, r in questions.head(args.questions).iterrows()]
    vlm = VLM.load(f"data/06_models/{args.model}")
    prompt = PromptConfig()

    def run(batch_size: int) -> tuple[list[str], float]:
        answerer = LocalAnswerer(vlm, prompt, batch_size, args.max_new_tokens)
        start = time.perf_counter()
        out = []
        for i in range(0, len(records), batch_size):
            out += answerer.answer(records[i : i + batch_size])
        return out, len(records) / (time.perf_counter() - start)

    loop, loop_qps = run(1)  # MMAD's reference scripts: one question per generate()
    batched, batched_qps = run(args.batch_size)
    letters = [parse_answer(t, list(r["options"])) for t, r in zip(loop, records, strict=True)]
    letters_b = [parse_answer(t, list(r["options"])) for t, r in zip(batched, records, strict=True)]
    same_text = sum(a == b for a, b in zip(loop, batched, strict=True))
    same_letter = sum(a == b for a, b in zip(letters, letters_b, strict=True))
    print(f"model {args.model}, {len(records)} questions, max_new_tokens {args.max_new_tokens}")
    print(f"one per generate : {loop_qps:7.2f} questions/s")
    print(f"batched ({args.batch_size:>3})    : {batched_qps:7.2f} questions/s")
    print(f"speed-up         : {batched_qps / loop_qps:7.2f}x")
    print(
        f"identical greedy texts {same_text}/{len(records)}, identical parsed answers "
        f"{same_letter}/{len(records)}"
    )


if __name__ == "__main__":
    main()
