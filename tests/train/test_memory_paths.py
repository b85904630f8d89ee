"""The memory-saving paths compute what the plain ones do, on the real tiny model:
target-only and completion-only logits, micro-batches (SFT and GRPO) and gradient
checkpointing give the same losses and gradients; injection for ``num_return_sequences``;
fp32 heatmaps from bf16 features; each process's GPU; named errors."""

from __future__ import annotations

import copy

import pytest
import torch

from emit_iad.train.common import prepare_model
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.resampling import Group
from emit_iad.train.grpo.rewards import answer_letter, build_rewards
from emit_iad.train.grpo.rollout import Response, Sampler, group_inputs, token_logp
from emit_iad.train.grpo.update import Policy, Stepper, policy_update, score_groups
from emit_iad.train.harness import make_accelerator
from emit_iad.train.sft import SFTConfig, answer_loss, label_batch, train_step
from emit_iad.train.targets import target
from emit_iad.vlm.bundle import EMITModule
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.fewshot import heatmap_from_features, inject_tokens
from emit_iad.vlm.heatmap_eval import heatmap_sanity
from emit_iad.vlm.loading import enable_checkpointing, resolve_device


def few_shot(records, n=3):
    return [r for r in records if r["type"] in ("Anomaly Detection", "Defect Localization")][:n]


def grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict, b: dict, atol=1e-5):
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.allclose(a[name], b[name], atol=atol, rtol=1e-4), name


def test_target_only_logits_give_hf_s_loss(tiny_vlm, records):
    vlm = copy.deepcopy(tiny_vlm)
    chunk = few_shot(records)
    targets = [target(r, "think") for r in chunk]
    batch = vlm.collate(chunk, PromptConfig(k_shot=1, answer_format="think"), targets=targets)
    labels = label_batch(batch, targets, vlm.processor.tokenizer)
    module = EMITModule(vlm).eval()
    with torch.no_grad():
        total, n = answer_loss(module, batch, labels)
        hf = module(**batch.inputs, labels=labels, fewshot_query=batch.fewshot_query,
                    fewshot_template=batch.fewshot_template).loss  # fmt: skip
    assert n == int((labels != -100).sum()) > 0
    assert (total / n).item() == pytest.approx(hf.item(), rel=1e-5)  # HF: mean over targets


def test_completion_only_logits_give_the_full_log_probs(tiny_vlm, records):
    vlm = copy.deepcopy(tiny_vlm)
    record = few_shot(records, 1)[0]
    batch = vlm.collate([record], PromptConfig(k_shot=1))
    tok = vlm.processor.tokenizer
    texts = ["<think>a</think><answer>A</answer>", "<answer>B</answer>"]
    responses = [Response(t, torch.tensor(tok(t + tok.eos_token)["input_ids"])) for t in texts]
    vlm.heatmap(batch)
    gi = group_inputs(batch, responses, tok.pad_token_id)
    inputs = gi.rows(0, 2, "cpu")
    module = EMITModule(vlm).eval()
    with torch.no_grad():
        got = token_logp(module, inputs, gi.prompt_len)
        full = module(**inputs).logits[:, gi.prompt_len - 1 : -1].float()
    targets = inputs["input_ids"][:, gi.prompt_len :]
    want = torch.log_softmax(full, -1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(got, want, atol=1e-5)


def sft_grads(vlm, chunk, **kw):
    config = SFTConfig(trainable=("text", "fewshot"), answer_format="think", **kw)
    prepare_model(vlm, config)
    module = EMITModule(vlm).train()
    vlm.fewshot.eval()  # BatchNorm: batch statistics are the one thing micro-batches change
    loss = train_step(module, vlm, chunk, config, config.prompt_config(), make_accelerator())
    return loss, grads(module)


def test_sft_micro_batches_and_checkpointing_keep_loss_and_gradient(tiny_vlm, records):
    chunk = few_shot(records, 4)
    whole_loss, whole = sft_grads(copy.deepcopy(tiny_vlm), chunk)
    micro_loss, micro = sft_grads(copy.deepcopy(tiny_vlm), chunk, micro_batch_size=1)
    assert micro_loss.item() == pytest.approx(whole_loss.item(), rel=1e-5)
    assert_same_grads(whole, micro)
    ckpt_loss, ckpt = sft_grads(copy.deepcopy(tiny_vlm), chunk, micro_batch_size=2,
                                gradient_checkpointing=True)  # fmt: skip
    assert ckpt_loss.item() == pytest.approx(whole_loss.item(), rel=1e-5)
    assert_same_grads(whole, ckpt)


def grpo_grads(vlm, records, on_model=None, **kw):
    kw.setdefault("trainable", ("lora", "fewshot"))
    config = GRPOConfig(group_size=4, beta=0.04, **kw)
    torch.manual_seed(0)  # the LoRA initialisation
    prepare_model(vlm, config)
    if on_model is not None:
        on_model(vlm)
    tok = vlm.processor.tokenizer
    sampler = Sampler(vlm, config.prompt_config(), 1.0, 8)
    groups = []
    for r in few_shot(records, 2):
        texts = [f"<think>x</think><answer>{r['answer']}</answer>", "<answer>Z</answer>",
                 "no answer", f"<answer>{r['answer']}</answer>"]  # fmt: skip
        resp = [Response(t, torch.tensor(tok(t + tok.eos_token)["input_ids"])) for t in texts]
        ok = [answer_letter(t, len(r["options"])) == r["answer"] for t in texts]
        groups.append(Group(r, resp, ok))
    scored, _, _ = score_groups(groups, build_rewards(config.rewards, {}), config, sampler,
                                tok.pad_token_id)  # fmt: skip
    module = EMITModule(vlm).eval()
    for p in module.parameters():  # LoRA B starts at 0: move it so every path carries gradient
        if p.requires_grad:
            p.data.add_(0.01)
    ref = copy.deepcopy(vlm.fewshot)
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.0)
    policy_update(Policy(module, vlm, ref_fewshot=ref), scored, config, Stepper(opt))
    return grads(module)


@pytest.mark.parametrize("loss", ["grpo", "dapo", "dr_grpo", "gspo", "cispo"])
def test_grpo_micro_batches_and_checkpointing_keep_the_gradient(tiny_vlm, records, loss):
    """Every loss whose normaliser is the update's (all but bnpo, whose definition is per
    micro-batch) gives the same gradient in micro-batches and with checkpointing."""
    whole = grpo_grads(copy.deepcopy(tiny_vlm), records, loss=loss)
    micro = grpo_grads(copy.deepcopy(tiny_vlm), records, loss=loss, micro_batch_size=3)
    assert_same_grads(whole, micro)
    ckpt = grpo_grads(copy.deepcopy(tiny_vlm), records, loss=loss, micro_batch_size=1,
                      gradient_checkpointing=True)  # fmt: skip
    assert_same_grads(whole, ckpt)


@pytest.mark.parametrize("mu", [1, 2])
def test_images_encoded_once_per_group_keep_the_gradient(tiny_vlm, records, monkeypatch, mu):
    """The gradient cache: a prompt's images go through the vision tower once per pass, not
    once per micro-batch, and the LoRA-on-ViT, aligner and LLM gradients stay the same."""
    from emit_iad.train.grpo import rollout, update

    kw = {"trainable": ("lora", "aligner", "fewshot"), "micro_batch_size": 1, "mu": mu,
          "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "vision": True}}  # fmt: skip
    calls = []

    def count(vlm):
        tower = vlm.model.get_base_model().model.vision_tower
        tower.register_forward_hook(lambda *a: calls.append(1))

    cached = grpo_grads(copy.deepcopy(tiny_vlm), records, on_model=count, **kw)
    once = len(calls)
    calls.clear()
    monkeypatch.setattr(update, "image_features", lambda *a: None)  # the pixels every time
    monkeypatch.setattr(rollout, "image_features", lambda *a: None)
    plain = grpo_grads(copy.deepcopy(tiny_vlm), records, on_model=count, **kw)
    assert any("vision_tower" in n and "lora_" in n for n in cached)
    assert any("multi_modal_projector" in n for n in cached)
    assert_same_grads(cached, plain)
    # 2 groups of 4 responses, micro-batches of 1: per pass (old log-probs when mu > 1, the
    # reference, the update) 2 encodings instead of 8, besides the 2 heatmaps (no_grad)
    passes = (mu > 1) + 1 + mu
    assert once == 2 + 2 * passes and len(calls) == 2 + 8 * passes


def test_injection_repeats_each_row_for_num_return_sequences():
    emb = torch.nn.Embedding(10, 2)
    torch.nn.init.zeros_(emb.weight)
    values = torch.tensor([[[1.0, 1.0]], [[2.0, 2.0]]])  # 2 rows, 1 placeholder each
    ids = torch.tensor([[7, 3], [7, 3], [3, 7], [3, 7]])  # each prompt twice, interleaved
    with inject_tokens(emb, 7, values, rows=2):
        out = emb(ids)
    assert out[:, :, 0].tolist() == [[1, 0], [1, 0], [0, 2], [0, 2]]
    with inject_tokens(emb, 7, values, rows=2):
        assert torch.equal(emb(torch.tensor([[3], [3]])), torch.zeros(2, 1, 2))  # later steps


def test_heatmap_similarities_in_fp32_from_bf16_features():
    torch.manual_seed(0)
    q = [torch.randn(1, 8, 8, 64).bfloat16()]
    t = [torch.randn(1, 4, 8, 8, 64).bfloat16()]
    got = heatmap_from_features(q, t, window=6)
    want = heatmap_from_features([q[0].float()], [t[0].float()], window=6)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    # what computing in bf16 would give: a handful of distinct values instead of one per patch
    coarse = want.bfloat16()
    assert coarse.unique().numel() < got.unique().numel() == 64


def test_cuda_means_this_process_s_gpu(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert resolve_device("cuda") == "cuda" and resolve_device("cpu") == "cpu"
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("cuda") == "cuda:3" and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto") == ("cuda:3" if torch.cuda.is_available() else "cpu")


def test_placeholders_that_do_not_match_are_named(tiny_vlm, records):
    record = dict(few_shot(records, 1)[0])
    record["question"] = "<FS_PROMPT> " + record["question"]
    with pytest.raises(ValueError, match=rf"questions \['{record['id']}'\]: few-shot placeholders"):
        tiny_vlm.collate([record], PromptConfig(k_shot=1))


def test_a_too_long_sft_batch_names_its_questions_and_the_parameter(tiny_vlm, records):
    vlm = copy.deepcopy(tiny_vlm)
    chunk = few_shot(records, 2)
    config = SFTConfig(trainable=("fewshot",), max_length=16)
    with pytest.raises(ValueError, match=r"questions \[.*\]: \d+ tokens, over sft.max_length 16"):
        train_step(EMITModule(vlm), vlm, chunk, config, config.prompt_config(), make_accelerator())


def test_checkpointing_is_on_after_prepare(tiny_vlm):
    vlm = copy.deepcopy(tiny_vlm)
    enable_checkpointing(vlm)
    assert vlm.model.is_gradient_checkpointing


def test_heatmap_check_runs_in_bf16_and_agrees_with_fp32(tiny_vlm, sets):
    _, _, qa = sets
    test = qa.split("test")
    fp32 = copy.deepcopy(tiny_vlm)
    bf16 = copy.deepcopy(tiny_vlm)
    bf16.model.to(torch.bfloat16)
    config = tiny_vlm.fewshot.config
    m32, _ = heatmap_sanity(fp32, test, config, max_images=40, overlays=2, image_size=64)
    m16, fig = heatmap_sanity(bf16, test, config, max_images=40, overlays=2, image_size=64)
    assert m16["images"] == m32["images"] > 10
    assert m16["image_auroc"] == pytest.approx(m32["image_auroc"], abs=0.03)
    assert m16["pixel_auroc"] == pytest.approx(m32["pixel_auroc"], abs=0.03)
    assert fig.axes


def test_an_unknown_images_block_names_the_file():
    from emit_iad.vlm.build import ModelConfig

    with pytest.raises(ValueError, match=r"model.images: unknown \['prompts'\].*parameters_model"):
        ModelConfig(images={"prompts": {}})
