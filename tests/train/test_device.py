"""Every tensor that meets the model is on the model's device, checked on the CPU.

The model is built on a fake ``cuda`` device (torch's ``FakeTensorMode``: shapes and devices,
no data, no GPU needed), which raises ``FakeTensorDeviceMismatchError`` wherever a CPU tensor
meets it. The data side (collating, rewards, resampling) runs for real on the CPU, as it does in
training. A ``ShapeEnv`` lets the InternVL image merge's data-dependent masks through. Backward
needs a real CUDA context, so these tests cover the forward and loss of each step; the CPU
tests of the same functions cover backward.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv

from emit_iad.train.common import prepare_model
from emit_iad.train.grpo.advantages import emit_advantages
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.resampling import Resampler
from emit_iad.train.grpo.rewards import answer_letter, build_rewards
from emit_iad.train.grpo.rollout import Response, Sampler
from emit_iad.train.grpo.update import Policy, Stepper, policy_update, score_groups
from emit_iad.train.sft import SFTConfig, answer_loss, label_batch
from emit_iad.train.targets import target
from emit_iad.vlm.bundle import VLM, EMITModule
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
from emit_iad.vlm.heatmap_eval import heatmaps
from emit_iad.vlm.tiny import TinyModelConfig, build_tiny_model

from ..conftest import TEXTS


@pytest.fixture
def fake_cuda():
    return FakeTensorMode(
        allow_non_fake_inputs=True, shape_env=ShapeEnv(allow_dynamic_output_shape_ops=True)
    )


def to_fake_cuda(module: torch.nn.Module, mode: FakeTensorMode) -> None:
    """Replace every parameter and buffer by a fake CUDA one, ties kept (``Module.to`` cannot
    swap fake tensors in)."""
    done: dict[int, torch.Tensor] = {}
    with mode:
        for m in module.modules():
            for store in (m._parameters, m._buffers):
                for name, t in store.items():
                    if t is None:
                        continue
                    if id(t) not in done:
                        fake = torch.empty_like(t, device="cuda")
                        if isinstance(t, torch.nn.Parameter):
                            fake = torch.nn.Parameter(fake, requires_grad=t.requires_grad)
                        done[id(t)] = fake
                    store[name] = done[id(t)]


def cuda_vlm(mode, prepare=None) -> VLM:
    """The tiny InternVL with its few-shot module, prepared on the CPU (LoRA, trainable
    parts), then put on the fake GPU, as ``accelerate``'s ``prepare`` moves it."""
    config = TinyModelConfig(vocab_size=600)
    model, processor = build_tiny_model(TEXTS, config)
    fewshot = FewShotModule(config.hidden_size, FewShotConfig(layers=(0, 1, 2)))
    vlm = VLM(model, processor, fewshot, {"stage": "base", "base_model": None})
    if prepare is not None:
        prepare_model(vlm, prepare)
    to_fake_cuda(vlm.model, mode)
    to_fake_cuda(vlm.fewshot, mode)
    assert vlm.device.type == "cuda" and fewshot.soft_prompt.device.type == "cuda"
    return vlm


def few_shot_records(records):
    return [r for r in records if r["type"] in ("Anomaly Detection", "Defect Localization")][:2]


def test_a_cpu_tensor_meeting_the_fake_cuda_model_is_caught(fake_cuda, records):
    """The harness itself: handing the CPU batch to the model unmoved fails."""
    vlm = cuda_vlm(fake_cuda)
    batch = vlm.collate(few_shot_records(records), PromptConfig(k_shot=1))
    with fake_cuda, pytest.raises(FakeTensorDeviceMismatchError):
        EMITModule(vlm)(**batch.inputs)


def test_sft_step_forward_and_loss_on_the_model_device(fake_cuda, records):
    config = SFTConfig(trainable=("fewshot", "lora"), answer_format="think")
    vlm = cuda_vlm(fake_cuda, config)
    chunk = few_shot_records(records)
    targets = [target(r, "think") for r in chunk]
    batch = vlm.collate(chunk, config.prompt_config(), targets=targets)
    assert batch.fewshot_query is not None  # the heatmap path runs
    labels = label_batch(batch, targets, vlm.processor.tokenizer)
    with fake_cuda:
        loss, n = answer_loss(EMITModule(vlm), batch, labels)
    assert loss.device.type == "cuda" and loss.requires_grad
    assert n == int((labels != -100).sum())


def test_grpo_update_with_resampling_and_reweighting_on_the_model_device(fake_cuda, records):
    """One GRPO update (μ = 2 with old log-probs, the KL to the LoRA-off reference) on groups
    that the real resampler filled: the first draw of each prompt is all wrong, a resampling
    round brings a correct response."""
    config = GRPOConfig(group_size=4, mu=2, beta=0.04, micro_batch_size=3,
                        trainable=("lora", "fewshot"))  # fmt: skip
    vlm = cuda_vlm(fake_cuda, config)
    tok = vlm.processor.tokenizer
    sampler = Sampler(vlm, config.prompt_config(), 1.0, 16)
    drawn: dict[int, int] = {}

    def scripted(record, n):  # stands for generate(), which fake tensors cannot run
        drawn[id(record)] = drawn.get(id(record), 0) + 1
        right = record["answer"] if drawn[id(record)] > 1 else None
        texts = [f"<think>look</think><answer>{right or 'Z'}</answer>"] * n
        return [Response(t, torch.tensor(tok(t + tok.eos_token)["input_ids"])) for t in texts]

    def correct(record, response):
        return answer_letter(response.text, len(record["options"])) == record["answer"]

    chunk = few_shot_records(records)
    for r in chunk:
        sampler.prompt_batch(r)  # collated on the CPU, as in training
    prompts = iter(chunk)
    groups, fill = Resampler(scripted, correct, 4, True, 3).fill(lambda: next(prompts, None), 2)
    assert len(groups) == 2 and fill.rounds == 2 and fill.difficult_before == 1.0
    ref_fewshot = FewShotModule(128, FewShotConfig(layers=(0, 1, 2))).eval()
    to_fake_cuda(ref_fewshot, fake_cuda)
    rewards = build_rewards(config.rewards, {})
    scored, metrics, _ = score_groups(groups, rewards, config, sampler, tok.pad_token_id)
    assert metrics["accuracy"] == pytest.approx(2 / 8)
    # EMIT's reweighting: 3 of 4 wrong → advantages × (1 + 3/4)
    plain = emit_advantages(torch.tensor([[3.0, 0, 0, 0]]), torch.tensor([[1, 0, 0, 0]]), False)
    assert torch.allclose(scored[0].advantages[:1], 1.75 * plain[0, :1], atol=1e-4)
    losses = []
    with fake_cuda:
        optimizer = torch.optim.AdamW([p for p in EMITModule(vlm).parameters() if p.requires_grad])
        loss_metrics = policy_update(Policy(EMITModule(vlm), vlm, ref_fewshot=ref_fewshot),
                                     scored, config, Stepper(optimizer, losses.append))
    # 2 groups × 4 responses in micro-batches of 3 → 2 per group, over μ = 2 passes
    assert len(losses) == 8 and all(loss.device.type == "cuda" for loss in losses)
    assert set(loss_metrics) == {"clip_fraction", "kl", "ratio"}


def test_heatmap_check_on_the_model_device(fake_cuda, records):
    vlm = cuda_vlm(fake_cuda)
    chunk = few_shot_records(records)
    queries = [r["query_image"] for r in chunk]
    templates = [r["similar_templates"][0] for r in chunk]
    with fake_cuda:
        maps = heatmaps(vlm, queries, templates, vlm.fewshot.config)
    assert maps.device.type == "cpu" and maps.dtype == torch.float32 and maps.shape[0] == 2
