"""Rollouts of the GRPO loop: sampling G completions per prompt and scoring token log-probs.

:class:`Sampler` goes through ``generate()``; it is the seam where a vLLM backend plugs in on
GPUs (same call: a prompt record and n, returning :class:`Response` objects).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch

from emit_iad.train.harness import whole_parameters
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import Batch, PromptConfig
from emit_iad.vlm.encoding import TOKEN_KEYS


@dataclass
class Response:
    text: str
    ids: torch.Tensor  # completion token ids (1-D, up to and including EOS)


class Sampler:
    """G sampled completions per prompt via ``generate()``, a round's prompts in one call
    (swap in vLLM here)."""

    def __init__(self, vlm: VLM, prompt: PromptConfig, temperature: float, max_new_tokens: int,
                 max_prompts: int | None = None, top_k: int = 0, top_p: float = 1.0):  # fmt: skip
        self.vlm, self.prompt = vlm, prompt
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.max_prompts = max_prompts
        self.top_k, self.top_p = top_k, top_p  # 0 / 1.0: the whole distribution
        self._batches: dict[int, Batch] = {}

    def new_step(self) -> None:
        """Forget the prompts of the last step: their cached heatmaps came from the vision
        tower as it was then (with LoRA on the ViT it changes every step)."""
        self._batches.clear()

    def prompt_batch(self, record) -> Batch:
        """The collated prompt (with its heatmap, once computed), kept while its group is
        sampled and scored within a step (bounded: pixel values are large at real scale)."""
        key = id(record)
        if key not in self._batches:
            if len(self._batches) >= 64:
                self._batches.pop(next(iter(self._batches)))
            self._batches[key] = self.vlm.collate([record], self.prompt)
        return self._batches[key]

    def __call__(self, record, n: int) -> list[Response]:
        return self.many([record], n)[0]

    @torch.no_grad()
    def many(self, records: list, n: int) -> list[list[Response]]:
        """n completions for each record; the prompts go through ``generate`` together, at most
        ``max_prompts`` at a time (None: all), each prompt's heatmap computed once."""
        out: list[list[Response]] = []
        step = self.max_prompts or max(1, len(records))
        with whole_parameters(self.vlm):  # ZeRO-3: generate() on each process alone
            for a in range(0, len(records), step):
                out += self._generate(records[a : a + step], n)
        return out

    def _generate(self, records: list, n: int) -> list[list[Response]]:
        singles = [self.prompt_batch(r) for r in records]
        maps = [self.vlm.heatmap(b) for b in singles]  # once per prompt, kept for scoring
        if len(records) == 1:
            batch = singles[0]
        else:  # one left-padded batch; its few-shot rows reuse the prompts' own maps
            batch = self.vlm.collate(records, self.prompt)
            if any(m is not None for m in maps):
                batch.heatmap = torch.cat([m for m in maps if m is not None])
        tok = self.vlm.processor.tokenizer
        inputs = batch.on(self.vlm.device)
        with self.vlm.injecting(batch):
            out = self.vlm.model.generate(
                **inputs,
                do_sample=True,
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                num_return_sequences=n,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                suppress_tokens=self.vlm.structural_token_ids(),
            )
        completions = out[:, inputs["input_ids"].shape[1] :].cpu()
        responses = []
        for row in completions:  # prompt i's n responses are rows i*n … i*n + n-1
            ends = (row == tok.eos_token_id).nonzero()
            ids = row[: int(ends[0]) + 1] if len(ends) else row
            responses.append(Response(tok.decode(ids, skip_special_tokens=True), ids))
        return [responses[i * n : (i + 1) * n] for i in range(len(records))]


@dataclass
class GroupInputs:
    """A prompt and its G completions, kept once and handed to the model in micro-batches: the
    prompt's images and few-shot heatmap are stored once and repeated only for the rows of one
    micro-batch, so memory grows with the micro-batch, not with G."""

    tokens: dict[str, torch.Tensor]  # (G, Lp + Lc) per-token tensors, CPU
    images: dict[str, torch.Tensor]  # the prompt's per-image tensors, once
    heatmap: torch.Tensor | None  # (1, h, w) the prompt's few-shot map, or None
    mask: torch.Tensor  # (G, Lc) 1 on completion tokens
    prompt_len: int
    lengths: list[int]  # completion tokens per response (host-side, for normalisers)

    @property
    def size(self) -> int:
        return self.mask.shape[0]

    def rows(self, start: int, stop: int, device, features=None) -> dict:
        """Model keyword arguments for responses ``start:stop``, on ``device``. With
        ``features`` (:func:`image_features` of this prompt) the images are not encoded again:
        the features are repeated per row in place of the pixels."""
        n = stop - start
        out = {k: v[start:stop].to(device) for k, v in self.tokens.items()}
        out.update({k: v.repeat(n, *([1] * (v.dim() - 1))).to(device)
                    for k, v in self.images.items()
                    if features is None or k != "pixel_values"})  # fmt: skip
        if torch.is_tensor(features):
            out["image_features"] = features.repeat(n, *([1] * (features.dim() - 1)))
        elif features is not None:  # Qwen: one tensor per image
            out["image_features"] = list(features) * n
        if self.heatmap is not None:
            out["fewshot_heatmap"] = self.heatmap.expand(n, -1, -1).to(device)
        return out


def group_inputs(batch: Batch, responses: list[Response], pad_id: int) -> GroupInputs:
    """Prompt + each completion as one padded group (G rows, right-padded completions)."""
    g = len(responses)
    lp = batch.inputs["input_ids"].shape[1]
    lc = max(len(r.ids) for r in responses)
    comp = torch.full((g, lc), pad_id, dtype=torch.long)
    mask = torch.zeros((g, lc))
    for i, r in enumerate(responses):
        comp[i, : len(r.ids)] = r.ids.cpu()
        mask[i, : len(r.ids)] = 1.0
    fill = {"input_ids": comp, "attention_mask": mask.long()}
    tokens = {
        k: torch.cat([v.cpu().expand(g, -1), fill.get(k, torch.zeros_like(comp)).to(v.dtype)], 1)
        for k, v in batch.inputs.items()
        if k in TOKEN_KEYS
    }
    images = {k: v for k, v in batch.inputs.items() if k not in TOKEN_KEYS}
    return GroupInputs(tokens, images, batch.heatmap, mask, lp, [len(r.ids) for r in responses])


def image_features(module, gi: GroupInputs, device):
    """The prompt's image tokens, encoded once for its G responses (grad as the caller's mode
    says); None for a prompt without images."""
    if "pixel_values" not in gi.images:
        return None
    images = {k: v.to(device) for k, v in gi.images.items()}
    return getattr(module, "module", module).image_features(**images)  # DDP: the inner module


def selective_logp(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] (B, T), in fp32 one row at a time: the full (B, T, V)
    log-probability tensor in fp32 would be ~0.6 GB per 1 k tokens at a 151 k vocabulary.

    >>> selective_logp(torch.zeros(1, 1, 4), torch.tensor([[2]]))
    tensor([[-1.3863]])
    """
    rows = []
    for row, t in zip(logits, targets, strict=True):  # [T, V], [T]
        row = row.float()
        rows.append(row.gather(-1, t[:, None]).squeeze(-1) - torch.logsumexp(row, dim=-1))
    return torch.stack(rows)


def token_logp(module, inputs: dict, lp: int) -> torch.Tensor:
    """Log-probabilities (B, Lc) of the completion tokens under ``module``; the head runs on
    the completion positions only (``logits_to_keep``)."""
    lc = inputs["input_ids"].shape[1] - lp
    logits = module(**inputs, logits_to_keep=lc + 1).logits[:, :-1]  # [B, Lc, V]
    targets = inputs["input_ids"][:, lp:].to(logits.device)  # [B, Lc]
    return selective_logp(logits, targets)


@dataclass
class LoraReference:
    """The starting policy under LoRA without a second copy of the model: the base with the
    adapter off, the few-shot module as it started, and the starting values of every tensor
    that trains fully besides the adapter (EMIT's ``modules_to_save``: the aligner). Without
    those, the reference would follow the aligner as it trains and the KL term would drift."""

    fewshot: torch.nn.Module | None
    start: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> starting value

    @classmethod
    def capture(cls, vlm: VLM, device) -> LoraReference:
        fewshot = copy.deepcopy(vlm.fewshot) if vlm.fewshot is not None else None
        if fewshot is not None:
            fewshot.to(device).eval()
        start = {n: p.detach().clone() for n, p in vlm.model.named_parameters()
                 if p.requires_grad and "lora_" not in n}  # fmt: skip
        return cls(fewshot, start)

    @contextlib.contextmanager
    def applied(self, vlm: VLM):
        """The policy as it started, for the block's duration (then restored)."""
        params = dict(vlm.model.named_parameters())
        now = {n: params[n].data for n in self.start}
        current = vlm.fewshot
        vlm.fewshot = self.fewshot
        for n, value in self.start.items():
            params[n].data = value
        try:
            with vlm.model.disable_adapter():
                yield
        finally:
            for n, value in now.items():
                params[n].data = value
            vlm.fewshot = current


@torch.no_grad()
def reference_logp(reference, vlm: VLM, gi: GroupInputs, spans_: list, device,
                   ref_fewshot) -> torch.Tensor:  # fmt: skip
    """Log-probabilities (G, Lc) of a group's completions under the reference policy, its
    images encoded once by the reference itself. ``ref_fewshot``: with LoRA, the
    :class:`LoraReference` (or just the starting few-shot module)."""
    if reference is not None:
        feats = image_features(reference, gi, device)
        return torch.cat([token_logp(reference, gi.rows(a, b, device, feats), gi.prompt_len)
                          for a, b in spans_])  # fmt: skip
    ref = ref_fewshot if isinstance(ref_fewshot, LoraReference) else LoraReference(ref_fewshot)
    with ref.applied(vlm):
        module = EMITModule(vlm)
        feats = image_features(module, gi, device)
        return torch.cat([token_logp(module, gi.rows(a, b, device, feats), gi.prompt_len)
                          for a, b in spans_])  # fmt: skip
