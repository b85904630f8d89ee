"""The update does what GRPO means: on a fixed group, one step raises the log-probability of the
higher-reward completion and lowers the other's; with difficulty-aware GRPO the update weighs a
group with more wrong responses more (EMIT's w = 1 + #incorrect / G), through score_groups and
policy_update on the real tiny model."""

from __future__ import annotations

import copy

import torch

from emit_iad.train.common import prepare_model
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.resampling import Group
from emit_iad.train.grpo.rewards import build_rewards
from emit_iad.train.grpo.rollout import Response, Sampler, token_logp
from emit_iad.train.grpo.update import Policy, Stepper, policy_update, score_groups
from emit_iad.vlm.bundle import EMITModule


def fixed_group(vlm, record, texts, correct):
    tok = vlm.processor.tokenizer
    responses = [Response(t, torch.tensor(tok(t + tok.eos_token)["input_ids"])) for t in texts]
    return Group(record, responses, correct)


def logps(module, scored):
    with torch.no_grad():
        gi = scored.inputs
        return (token_logp(module, gi.rows(0, gi.size, "cpu"), gi.prompt_len) * gi.mask).sum(1)


def test_one_step_raises_the_rewarded_completion_and_lowers_the_other(tiny_vlm, records):
    vlm = copy.deepcopy(tiny_vlm)
    record = next(r for r in records if r["type"] == "Anomaly Detection")
    right, wrong = record["answer"], next(x for x in "AB" if x != record["answer"])
    config = GRPOConfig(group_size=2, trainable=("text", "fewshot"), beta=0.0, lr=1e-3,
                        rewards={"accuracy": 1.0}, difficulty_aware=False)  # fmt: skip
    prepare_model(vlm, config)
    texts = [f"<think>x</think><answer>{right}</answer>", f"<think>x</think><answer>{wrong}</answer>"]
    group = fixed_group(vlm, record, texts, [True, False])
    sampler = Sampler(vlm, config.prompt_config(), 1.0, 8)
    scored, _, _ = score_groups([group], build_rewards(config.rewards), config, sampler,
                                vlm.processor.tokenizer.pad_token_id)  # fmt: skip
    # rewards [1, 0]: mean 0.5, unbiased std 2 ** -0.5
    half = 0.5 / (2**-0.5 + 1e-4)
    assert torch.allclose(scored[0].advantages, torch.tensor([half, -half]), atol=1e-5)
    module = EMITModule(vlm).eval()
    vlm.heatmap(scored[0].batch)
    scored[0].inputs.heatmap = scored[0].batch.heatmap
    before = logps(module, scored[0])
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.05)
    policy_update(Policy(module, vlm), scored, config, Stepper(opt))
    after = logps(module, scored[0])
    assert after[0] > before[0] and after[1] < before[1], (before, after)


def test_difficulty_aware_update_weighs_groups_with_more_wrong_answers_more(tiny_vlm, records):
    vlm = copy.deepcopy(tiny_vlm)
    record = next(r for r in records if r["type"] == "Anomaly Detection")
    right, wrong = record["answer"], next(x for x in "AB" if x != record["answer"])
    texts = [f"<answer>{right}</answer>"] + [f"<answer>{wrong}</answer>"] * 3
    group = fixed_group(vlm, record, texts, [True, False, False, False])
    tok = vlm.processor.tokenizer
    out = {}
    for aware in (False, True):
        config = GRPOConfig(group_size=4, rewards={"accuracy": 1.0}, difficulty_aware=aware)
        sampler = Sampler(vlm, config.prompt_config(), 1.0, 8)
        scored, _, _ = score_groups([copy.deepcopy(group)], build_rewards(config.rewards), config,
                                    sampler, tok.pad_token_id)  # fmt: skip
        out[aware] = scored[0].advantages
    # rewards [1, 0, 0, 0]: mean 0.25, std 0.5 (unbiased) -> standard advantages; x 1.75 with
    # EMIT's reweighting (3 of 4 wrong)
    std = torch.tensor([1.0, 0.0, 0.0, 0.0]).std().item()
    plain = (torch.tensor([1.0, 0.0, 0.0, 0.0]) - 0.25) / (std + 1e-4)
    assert torch.allclose(out[False], plain, atol=1e-5)
    assert torch.allclose(out[True], plain * 1.75, atol=1e-5)


def test_the_kl_reference_keeps_the_starting_aligner_under_lora(tiny_vlm, records):
    """EMIT trains the aligner fully beside LoRA (modules_to_save): the KL reference is the
    base with the adapter off *and* the aligner and few-shot module as they started."""
    from emit_iad.train.grpo.rollout import LoraReference, reference_logp

    vlm = copy.deepcopy(tiny_vlm)
    config = GRPOConfig(group_size=2, trainable=("lora", "aligner", "fewshot"),
                        lora={"r": 4, "alpha": 8, "dropout": 0.0})  # fmt: skip
    prepare_model(vlm, config)
    record = next(r for r in records if r["type"] == "Anomaly Detection")
    group = fixed_group(vlm, record, ["<think>x</think><answer>A</answer>",
                                      "<think>y</think><answer>B</answer>"], [True, False])
    sampler = Sampler(vlm, config.prompt_config(), 1.0, 8)
    [scored], _, _ = score_groups([group], build_rewards({"accuracy": 1.0}), config, sampler,
                                  vlm.processor.tokenizer.pad_token_id)  # fmt: skip
    gi = scored.inputs
    gi.heatmap = vlm.heatmap(scored.batch)
    reference = LoraReference.capture(vlm, "cpu")
    assert any("multi_modal_projector" in n for n in reference.start)
    spans_ = [(0, gi.size)]
    with torch.no_grad():
        start = reference_logp(None, vlm, gi, spans_, "cpu", reference)
        trained = [p for p in EMITModule(vlm).parameters() if p.requires_grad]
        for p in trained:  # a step that changes every trained tensor
            p.add_(0.05 * torch.randn_like(p))
        kept = [p.detach().clone() for p in trained]
        later = reference_logp(None, vlm, gi, spans_, "cpu", reference)
        drifting = reference_logp(None, vlm, gi, spans_, "cpu", LoraReference(reference.fewshot))
        policy = token_logp(EMITModule(vlm), gi.rows(0, gi.size, "cpu"), gi.prompt_len)
    assert torch.allclose(start, later, atol=1e-6)
    assert not torch.allclose(start, drifting, atol=1e-4)  # the aligner as it trains: drift
    assert not torch.allclose(start, policy, atol=1e-4)
    assert all(torch.equal(p, k) for p, k in zip(trained, kept, strict=True))  # restored
