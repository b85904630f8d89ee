"""InternVL3-1B-hf's published layout, shrunk in width and depth, through the real-scale path.

Random weights with the real structure: 448 px tiles of 14 px patches, pixel shuffle 0.5, the
real projector (``mlp1``: LayerNorm + two Linear layers), a Qwen2 text model with an untied
head, a tokenizer without ``<FS_PROMPT>`` (the add-token path runs) and InternVL's tiling,
saved with ``save_pretrained`` and loaded like a hub checkpoint. Then EMIT's two stages with
conf/gpu's mechanics (aligner + few-shot SFT in micro-batches with gradient checkpointing;
GRPO with LoRA on the LLM and the ViT), a saved delta, and evaluation after reloading it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
)

from emit_iad.evaluate.answerers import LocalAnswerer
from emit_iad.train.grpo.loop import GRPOConfig, train_grpo
from emit_iad.train.sft import SFTConfig, train_sft
from emit_iad.vlm.bundle import TRAINED_FILE, VLM
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.fewshot import FewShotConfig
from emit_iad.vlm.loading import load_pretrained
from emit_iad.vlm.tiny import CHAT_TEMPLATE, FEWSHOT_TOKEN, train_tokenizer

from ..conftest import TEXTS


def internvl3_1b_layout(folder) -> None:
    """InternVL3-1B-hf's config with widths and depths shrunk; everything else as published."""
    tokenizer = train_tokenizer(TEXTS, 600, fewshot=False)
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size={"height": 448, "width": 448}, crop_to_patches=True, max_patches=12
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=256,
        chat_template=CHAT_TEMPLATE,
    )
    config = InternVLConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "intermediate_size": 64, "image_size": 448, "patch_size": 14,
                       "use_mean_pooling": False, "layer_scale_init_value": 0.1},
        text_config={"model_type": "qwen2", "hidden_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "intermediate_size": 128, "vocab_size": len(tokenizer),
                     "tie_word_embeddings": False, "max_position_embeddings": 8192,
                     "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=256,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )  # fmt: skip
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_internvl3_layout_trains_saves_only_what_trained_and_answers(dtype, sets, tmp_path):
    _, _, qa = sets
    train = qa.split("train")
    few = train[train.type.isin(["Anomaly Detection", "Defect Localization"])]
    few = few[few.similar_templates.map(len) > 0].head(4)
    hub = tmp_path / "InternVL3-1B-hf-shrunk"
    internvl3_1b_layout(hub)
    vlm = load_pretrained(str(hub), dtype, "cpu", True, FewShotConfig(layers=(1, 2), window=6))
    assert FEWSHOT_TOKEN in vlm.processor.tokenizer.get_vocab()  # added, embeddings resized
    head = vlm.model.get_output_embeddings().weight
    assert head.shape[0] == len(vlm.processor.tokenizer)
    assert torch.allclose(head[-1].float(), head[:-1].float().mean(0), atol=1e-2)
    vlm.meta.update(stage="base", images={"prompt": {"crop_to_patches": True, "max_patches": 2}})
    batch = vlm.collate(few.head(1).to_dict("records"), PromptConfig(k_shot=1))
    assert batch.inputs["pixel_values"].shape[-1] == 448  # real tiles, tiled per the parameter
    assert batch.inputs["pixel_values"].shape[0] == 2  # square images: one tile each
    aligner_before = vlm.model.model.multi_modal_projector.linear_1.weight.detach().clone()

    sft = SFTConfig(trainable=("aligner", "fewshot"), lr=1e-2, epochs=1, batch_size=2,
                    micro_batch_size=1, gradient_checkpointing=True, max_length=10240,
                    checkpoint_every=0, val_max_questions=0)  # fmt: skip
    vlm, history = train_sft(vlm, few, few.head(0), sft, str(tmp_path / "sft_ckpt"))
    assert len(history) == 2 and history.loss.notna().all()
    aligner = vlm.model.model.multi_modal_projector.linear_1.weight
    assert not torch.equal(aligner, aligner_before)  # the aligner trained
    assert vlm.model.model.language_model.layers[0].mlp.up_proj.weight.requires_grad is False

    grpo = GRPOConfig(tasks=("Anomaly Detection",), steps=1, batch_size=1, group_size=2,
                      max_new_tokens=6, difficulty_aware=False, micro_batch_size=1,
                      gradient_checkpointing=True, trainable=("lora", "aligner", "fewshot"),
                      lora={"r": 4, "alpha": 8, "dropout": 0.0, "vision": True},
                      checkpoint_every=0, probe_prompts=0, val_max_questions=0)  # fmt: skip
    vlm, history, _ = train_grpo(vlm, few, few.head(0), grpo, str(tmp_path / "grpo_ckpt"))
    assert history.completion_tokens.iloc[-1] > 0
    names = [n for n, p in vlm.model.named_parameters() if p.requires_grad]
    assert any("vision_tower" in n and "lora_" in n for n in names)
    assert any("language_model" in n and "lora_" in n for n in names)

    vlm.meta.update(stage="grpo", trainable=list(grpo.trainable), base_model=str(hub))
    out = tmp_path / "grpo"
    vlm.save(out)
    files = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", TRAINED_FILE, "fewshot.safetensors"} <= files
    assert "model.safetensors" not in files and "config.json" not in files  # no full copy

    again = VLM.load(out, dtype=dtype)
    assert again.meta["base_model"] == str(hub)
    loaded = again.model.get_base_model().model.multi_modal_projector.linear_1.weight
    assert torch.equal(loaded, vlm.model.get_base_model().model.multi_modal_projector.linear_1.weight)
    assert next(again.model.parameters()).dtype == getattr(torch, dtype)
    replies = LocalAnswerer(again, PromptConfig(k_shot=1), max_new_tokens=4).answer(
        few.head(2).to_dict("records")
    )
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
