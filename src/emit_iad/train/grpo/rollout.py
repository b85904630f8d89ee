"""Rollouts of the GRPO loop: sampling G completions per prompt and scoring token log-probs.

:class:`Sampler` goes through ``generate()``; it is the seam where a vLLM backend plugs in on
GPUs (same call: a prompt record and n, returning :class:`Response` objects).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import Batch, PromptConfig, collate


@dataclass
class Response:
    text: str
    ids: torch.Tensor  # completion token ids (1-D, up to and including EOS)


class Sampler:
    """G sampled completions for one prompt via ``generate()`` (swap in vLLM here)."""

    def __init__(self, vlm: VLM, prompt: PromptConfig, temperature: float, max_new_tokens: int):
        self.vlm, self.prompt = vlm, prompt
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self._batches: dict[int, Batch] = {}

    def prompt_batch(self, record) -> Batch:
        """The collated prompt, kept while its group is sampled and scored (a small cache:
        pixel values of every prompt would not fit at real scale)."""
        key = id(record)
        if key not in self._batches:
            if len(self._batches) >= 64:
                self._batches.pop(next(iter(self._batches)))
            self._batches[key] = collate(
                [record],
                self.vlm.processor,
                self.prompt,
                self.vlm.fewshot_placeholders(),
                self.vlm.fewshot_types(),
            )
        return self._batches[key]

    @torch.no_grad()
    def __call__(self, record, n: int) -> list[Response]:
        batch = self.prompt_batch(record)
        tok = self.vlm.processor.tokenizer
        inputs = {k: v.to(self.vlm.device) for k, v in batch.inputs.items()}
        with self.vlm.injecting(batch):
            out = self.vlm.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_k=0,
                top_p=1.0,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                suppress_tokens=self.vlm.structural_token_ids(),
            )
        completions = out[:, inputs["input_ids"].shape[1] :]
        responses = []
        for row in completions:
            ends = (row == tok.eos_token_id).nonzero()
            ids = row[: int(ends[0]) + 1] if len(ends) else row
            responses.append(Response(tok.decode(ids, skip_special_tokens=True), ids.cpu()))
        return responses


def group_inputs(
    batch: Batch, responses: list[Response], pad_id: int
) -> tuple[dict, torch.Tensor, int]:
    """Prompt + each completion as one padded batch (G rows); completion mask; prompt length."""
    g = len(responses)
    lp = batch.inputs["input_ids"].shape[1]
    lc = max(len(r.ids) for r in responses)
    comp = torch.full((g, lc), pad_id, dtype=torch.long)
    mask = torch.zeros((g, lc))
    for i, r in enumerate(responses):
        comp[i, : len(r.ids)] = r.ids
        mask[i, : len(r.ids)] = 1.0
    inputs = {
        "input_ids": torch.cat([batch.inputs["input_ids"].expand(g, -1), comp], dim=1),
        "attention_mask": torch.cat(
            [batch.inputs["attention_mask"].expand(g, -1), mask.long()], dim=1
        ),
        "pixel_values": batch.inputs["pixel_values"].repeat(g, 1, 1, 1),
    }
    if batch.fewshot_query is not None:
        inputs["fewshot_query"] = batch.fewshot_query.expand(g, -1, -1, -1)
        inputs["fewshot_template"] = batch.fewshot_template.expand(g, -1, -1, -1)
    return inputs, mask, lp


def token_logp(module, inputs: dict, lp: int) -> torch.Tensor:
    """Log-probabilities (G, Lc) of the completion tokens under ``module``."""
    logits = module(**inputs).logits[:, lp - 1 : -1].float()  # [G, Lc, V]
    targets = inputs["input_ids"][:, lp:]  # [G, Lc]
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)


@torch.no_grad()
def reference_logp(reference, vlm: VLM, inputs: dict, lp: int, ref_fewshot) -> torch.Tensor:
    if reference is not None:
        return token_logp(reference, inputs, lp)
    # LoRA: the starting model is the base with the adapter switched off (no second copy)
    current = vlm.fewshot
    vlm.fewshot = ref_fewshot
    try:
        with vlm.model.disable_adapter():
            return token_logp(EMITModule(vlm), inputs, lp)
    finally:
        vlm.fewshot = current
