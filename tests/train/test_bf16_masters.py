"""bf16 that trains: at EMIT's learning rate (1e-5), one step moves every trainable tensor of a
bf16 model in nearly all its elements, through fp32 masters; AdamW on the bf16 tensors
themselves moves few of them. (peft keeps LoRA adapters in fp32 already; the aligner and the
few-shot module are bf16 like the base.)"""

from __future__ import annotations

import copy

import torch

from emit_iad.train.common import prepare_model
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.harness import MasterAdamW, make_optimizer, trainable_parameters
from emit_iad.train.sft import answer_loss, label_batch
from emit_iad.train.targets import target
from emit_iad.vlm.bundle import EMITModule
from emit_iad.vlm.chat import PromptConfig

PARTS = ("lora", "aligner", "fewshot")  # EMIT's stage 2: LoRA + mlp1 + projector + soft prompt


def bf16_module(tiny_vlm):
    vlm = copy.deepcopy(tiny_vlm)
    vlm.model.to(torch.bfloat16)
    vlm.fewshot.to(torch.bfloat16)
    prepare_model(vlm, GRPOConfig(trainable=PARTS, lora={"r": 4, "alpha": 8, "dropout": 0.0}))
    return vlm, EMITModule(vlm)


def one_step(vlm, module, optimizer, records):
    prompt = PromptConfig(k_shot=1, answer_format="plain")
    targets = [target(r, "plain") for r in records]
    batch = vlm.collate(records, prompt, targets=targets)
    loss, n = answer_loss(module, batch, label_batch(batch, targets, vlm.processor.tokenizer))
    (loss / n).backward()
    optimizer.step()
    optimizer.zero_grad()


def changed_share(before: torch.Tensor, after: torch.Tensor) -> float:
    return (before.float() != after.float()).float().mean().item()


def test_fp32_masters_move_every_trainable_tensor_at_lr_1e5(tiny_vlm, records):
    vlm, module = bf16_module(tiny_vlm)
    params = trainable_parameters(module)
    low = {n for n, p in module.named_parameters() if p.requires_grad and p.dtype == torch.bfloat16}
    assert any("multi_modal_projector" in n for n in low) and any("fewshot" in n for n in low)
    assert all(p.dtype == torch.bfloat16 for p in module.parameters() if not p.requires_grad)
    optimizer = make_optimizer(params, lr=1e-5, weight_decay=0.1, beta2=0.95)
    assert isinstance(optimizer, MasterAdamW)
    start = [m.detach().clone() for m in optimizer.masters()]
    one_step(vlm, module, optimizer, records)
    shares = [changed_share(a, b) for a, b in zip(start, optimizer.masters(), strict=True)]
    assert min(shares) >= 0.95, shares
    # the model's bf16 tensors are the masters rounded: they follow as the updates add up
    assert all(torch.equal(p, m.to(p.dtype)) for p, m in zip(params, optimizer.masters(),
                                                               strict=True))  # fmt: skip
    state = optimizer.state_dict()
    fresh = make_optimizer(params, lr=1e-5, weight_decay=0.1, beta2=0.95)
    fresh.load_state_dict(state)  # a resumed run gets the masters back, not the rounded ones
    assert all(torch.equal(a, b) for a, b in zip(fresh.masters(), optimizer.masters(),
                                                  strict=True))  # fmt: skip


def test_adamw_on_the_bf16_tensors_themselves_barely_moves_them(tiny_vlm, records):
    vlm, module = bf16_module(tiny_vlm)
    params = trainable_parameters(module)
    start = [p.detach().clone() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1, betas=(0.9, 0.95))
    one_step(vlm, module, optimizer, records)
    low = [(a, b) for a, b in zip(start, params, strict=True) if b.dtype == torch.bfloat16]
    moved = sum((a != b).sum().item() for a, b in low)
    assert moved / sum(b.numel() for _, b in low) < 0.5
