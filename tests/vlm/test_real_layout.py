"""InternVL3-1B-hf's and Qwen2.5-VL-3B's published layouts, shrunk in width and depth
(tests/layouts.py), through the real-scale path.

Loaded like hub checkpoints (``<FS_PROMPT>`` added, embeddings grown). Then EMIT's two stages with
conf/gpu's mechanics (aligner + few-shot SFT in micro-batches with gradient checkpointing;
GRPO with LoRA on the LLM and the ViT), a saved delta, and evaluation after reloading it.
"""

from __future__ import annotations

import pytest
import torch

from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.trainer import train_grpo
from emit_iad.train.sft import SFTConfig, train_sft
from emit_iad.vlm.answering import LocalAnswerer
from emit_iad.vlm.bundle import TRAINED_FILE, base_model_of
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.families import ALIGNERS
from emit_iad.vlm.fewshot import FewShotConfig
from emit_iad.vlm.loading import load_pretrained, load_vlm
from emit_iad.vlm.tiny import FEWSHOT_TOKEN

from ..layouts import LAYOUTS


def aligner_weight(model) -> torch.Tensor:
    """The first weight of the vision-to-language aligner (InternVL's mlp1, Qwen's merger)."""
    return next(p for n, p in base_model_of(model).named_parameters()
                if any(a in n for a in ALIGNERS) and n.endswith("weight"))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_real_layout_trains_saves_only_what_trained_and_answers(layout, dtype, sets, tmp_path):
    _, _, qa = sets
    train = qa.split("train")
    few = train[train.type.isin(["Anomaly Detection", "Defect Localization"])]
    few = few[few.similar_templates.map(len) > 0].head(4)
    hub = tmp_path / f"{layout}-shrunk"
    LAYOUTS[layout](hub)
    vlm = load_pretrained(str(hub), dtype, "cpu", True, FewShotConfig(layers=(1, 2), window=6))
    assert FEWSHOT_TOKEN in vlm.processor.tokenizer.get_vocab()  # added, embeddings resized
    head = vlm.model.get_output_embeddings().weight
    assert head.shape[0] == len(vlm.processor.tokenizer)
    assert torch.allclose(head[-1].float(), head[:-1].float().mean(0), atol=1e-2)
    qwen = layout.startswith("Qwen")
    prompt_images = ({"size": {"shortest_edge": 3136, "longest_edge": 112 * 112}} if qwen
                     else {"crop_to_patches": True, "max_patches": 2})  # fmt: skip
    vlm.meta.update(stage="base", images={"prompt": prompt_images})
    batch = vlm.collate(few.head(1).to_dict("records"), PromptConfig(k_shot=1))
    if qwen:  # dynamic resolution: 2-D patch rows; 64 px synthetic images → 56 px (2 merge units)
        assert batch.inputs["image_grid_thw"].tolist() == [[1, 4, 4]] * 2
        assert batch.inputs["pixel_values"].shape == (32, 3 * 2 * 14 * 14)
        assert "mm_token_type_ids" in batch.inputs
    else:
        assert batch.inputs["pixel_values"].shape[-1] == 448  # real tiles, tiled per parameter
        assert batch.inputs["pixel_values"].shape[0] == 2  # square images: one tile each
    assert batch.fewshot_query.shape[-2:] == (448, 448)  # the heatmap's 32 x 32 patch grid
    assert vlm.heatmap(batch).shape == (1, 32, 32)
    aligner_before = aligner_weight(vlm.model).detach().clone()

    sft = SFTConfig(trainable=("aligner", "fewshot"), lr=1e-2, epochs=1, batch_size=2,
                    micro_batch_size=1, gradient_checkpointing=True, max_length=10240,
                    checkpoint_every=0, val_max_questions=0)  # fmt: skip
    vlm, history = train_sft(vlm, few, few.head(0), sft, str(tmp_path / "sft_ckpt"))
    assert len(history) == 2 and history.loss.notna().all()
    assert not torch.equal(aligner_weight(vlm.model), aligner_before)  # the aligner trained
    assert vlm.model.model.language_model.layers[0].mlp.up_proj.weight.requires_grad is False

    grpo = GRPOConfig(tasks=("Anomaly Detection",), steps=1, batch_size=1, group_size=2,
                      max_new_tokens=6, difficulty_aware=False, micro_batch_size=1,
                      gradient_checkpointing=True, trainable=("lora", "aligner", "fewshot"),
                      lora={"r": 4, "alpha": 8, "dropout": 0.0, "vision": True},
                      checkpoint_every=0, probe_prompts=0, val_max_questions=0)  # fmt: skip
    vlm, history, _ = train_grpo(vlm, few, few.head(0), grpo, str(tmp_path / "grpo_ckpt"))
    assert history.completion_tokens.iloc[-1] > 0
    names = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    tower = "visual" if qwen else "vision_tower"
    assert any(tower in n and "lora_" in n for n in names)
    assert any("language_model" in n and "lora_" in n for n in names)

    vlm.meta.update(stage="grpo", trainable=list(grpo.trainable), base_model=str(hub))
    out = tmp_path / "grpo"
    vlm.save(out)
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", TRAINED_FILE, "fewshot.safetensors"} <= files
    assert "model.safetensors" not in files and "config.json" not in files  # no full copy

    again = load_vlm(out, dtype=dtype)
    assert again.meta["base_model"] == str(hub)
    assert torch.equal(aligner_weight(again.model), aligner_weight(vlm.model))
    assert next(again.model.parameters()).dtype == getattr(torch, dtype)
    records = few.head(2).to_dict("records")
    replies = LocalAnswerer(again, PromptConfig(k_shot=1), max_new_tokens=4).answer(records)
    # the reloaded delta answers exactly as the model that was saved
    assert replies == LocalAnswerer(vlm, PromptConfig(k_shot=1), max_new_tokens=4).answer(records)
