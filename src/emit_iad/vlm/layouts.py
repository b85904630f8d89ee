"""Published model layouts with random weights, built from their configurations (no download).

InternVL3-8B-hf and Qwen2.5-VL-3B-Instruct as their ``config.json`` gives them (``scale:
"full"``), or shrunk in width and depth (``"tiny"``) with everything else as published. The
tokenizer is a small byte-level BPE trained on a few sentences, with each family's special
tokens; ``full`` keeps the published vocabulary size in the embeddings and the head (rows past
the tokenizer are never indexed), so that memory and logits are those of the real model. Used
by ``benchmarks/gpu_check.py`` (memory and speed of the project's own trainers) and by the
tests of the real-scale path.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from emit_iad.vlm.tiny import CHAT_TEMPLATE, REASONING_TAGS, train_tokenizer

SENTENCES = [
    "Is there any defect in the object? Yes. No. There is a defect in the object.",
    "What is the type of the defect? Scratch. Crack. Hole. Where is the defect? Top left.",
    "<think>The query differs from the template at the top left.</think><answer>A</answer>",
] * 20

# InternVL3-8B-hf/config.json (and InternVL3-1B-hf's layout, shrunk, for "tiny")
INTERNVL3_8B = {
    "vision": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
               "intermediate_size": 4096},
    "text": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 151_674},
}  # fmt: skip
INTERNVL3_TINY = {
    "vision": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 64},
    "text": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": None},
}  # fmt: skip
# Qwen2.5-VL-3B-Instruct/config.json
QWEN2_5_VL_3B = {
    "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
               "out_hidden_size": 2048, "fullatt_block_indexes": [7, 15, 23, 31]},
    "text": {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
             "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151_936,
             "mrope_section": [16, 24, 24]},
}  # fmt: skip
QWEN2_5_VL_TINY = {
    "vision": {"depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
               "out_hidden_size": 64, "fullatt_block_indexes": [1, 3]},
    "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": None,
             "mrope_section": [2, 3, 3]},
}  # fmt: skip


def internvl3(scale: str = "tiny", texts: list[str] | None = None):
    """(model, processor) of InternVL3's layout: 448 px tiles of 14 px patches, pixel shuffle
    0.5, the ``mlp1`` projector, a Qwen2 text model with an untied head. The tokenizer has no
    ``<FS_PROMPT>``, as a published checkpoint."""
    sizes = {"full": INTERNVL3_8B, "tiny": INTERNVL3_TINY}[scale]
    tokenizer = train_tokenizer(texts or SENTENCES, 600, fewshot=False)
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(
            size={"height": 448, "width": 448}, crop_to_patches=True, max_patches=12
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(),
        image_seq_length=256,
        chat_template=CHAT_TEMPLATE,
    )
    text = {**sizes["text"], "vocab_size": sizes["text"]["vocab_size"] or len(tokenizer)}
    config = InternVLConfig(
        vision_config={**sizes["vision"], "image_size": 448, "patch_size": 14,
                       "use_mean_pooling": False, "layer_scale_init_value": 0.1},
        text_config={"model_type": "qwen2", **text, "tie_word_embeddings": False,
                     "max_position_embeddings": 32768,
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
    return model, processor


# Qwen2.5's special tokens, in its order (the real ids start at 151,643)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                 "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>",
                 "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
                 "<|image_pad|>", "<|video_pad|>"]  # fmt: skip
# Qwen2.5-VL's chat template, reduced to what MMAD prompts use: text and image parts in order,
# an image as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad)
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer(texts: list[str] | None = None, vocab_size: int = 600):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator((texts or SENTENCES) + REASONING_TAGS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", padding_side="left")  # fmt: skip


def qwen2_5_vl(scale: str = "tiny", texts: list[str] | None = None):
    """(model, processor) of Qwen2.5-VL-3B's layout: the ``visual`` tower (14 px patches, 2×2
    merge units, 112 px attention windows with full-attention blocks between them, the
    merger), a Qwen2.5 text model with mRoPE and a tied head, the processor's dynamic
    resolution and Qwen's special tokens."""
    sizes = {"full": QWEN2_5_VL_3B, "tiny": QWEN2_5_VL_TINY}[scale]
    tokenizer = qwen_tokenizer(texts)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_TEMPLATE,
    )
    ids = tokenizer.get_vocab()
    text = dict(sizes["text"])
    mrope = text.pop("mrope_section")
    text["vocab_size"] = text["vocab_size"] or len(tokenizer)
    config = Qwen2_5_VLConfig(
        vision_config={**sizes["vision"], "in_channels": 3, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                       "hidden_act": "silu"},
        text_config={**text, "tie_word_embeddings": True, "max_position_embeddings": 128000,
                     "bos_token_id": None,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                         "mrope_section": mrope},
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model, processor


LAYOUTS = {"InternVL3": internvl3, "Qwen2.5-VL": qwen2_5_vl}


def save_layout(name: str, folder, scale: str = "tiny", texts: list[str] | None = None) -> None:
    """Save a layout with ``save_pretrained``, so that it loads like a hub checkpoint."""
    model, processor = LAYOUTS[name](scale, texts)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
