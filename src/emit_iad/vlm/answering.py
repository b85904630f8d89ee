"""Answering question records with a local model: batched greedy generation, left padding and
the KV cache. Below the evaluation (which also asks API models) so that the registry's pyfunc
and the ablation need nothing above ``vlm``."""

from __future__ import annotations

from collections.abc import Sequence

from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.chat import PromptConfig


class LocalAnswerer:
    """Batched greedy generation with left padding and the KV cache."""

    def __init__(self, vlm: VLM, prompt: PromptConfig, batch_size: int = 16,
                 max_new_tokens: int = 128, knowledge: dict | None = None):  # fmt: skip
        self.vlm, self.prompt, self.batch_size = vlm, prompt, batch_size
        self.max_new_tokens, self.knowledge = max_new_tokens, knowledge
        vlm.model.eval()
        if vlm.fewshot is not None:
            vlm.fewshot.eval()

    def answer(self, records: Sequence) -> list[str]:
        batch = self.vlm.collate(records, self.prompt, self.knowledge)
        tok = self.vlm.processor.tokenizer
        return self.vlm.generate(
            batch,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
