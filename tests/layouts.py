"""Published model layouts, shrunk in width and depth, with random weights, saved with
``save_pretrained`` so that they load like hub checkpoints.

Everything but the sizes is as published: InternVL3-1B-hf (448 px tiles of 14 px patches,
pixel shuffle 0.5, the ``mlp1`` projector, a Qwen2 text model with an untied head) and
Qwen2.5-VL-3B-Instruct (the ``visual`` tower: 14 px patches, 2×2 merge units, 112 px attention
windows with full-attention blocks between them, the merger; a Qwen2.5 text model with mRoPE
and a tied head; the processor's dynamic resolution and Qwen's special tokens). The tokenizers
have no ``<FS_PROMPT>``, as a published checkpoint, so that the add-token path runs.
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

from .conftest import TEXTS


def internvl3_1b(folder) -> None:
    """InternVL3-1B-hf's config with widths and depths shrunk."""
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


def qwen_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS + REASONING_TAGS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", padding_side="left")  # fmt: skip


def qwen2_5_vl_3b(folder) -> None:
    """Qwen2.5-VL-3B-Instruct's config with widths and depths shrunk."""
    tokenizer = qwen_tokenizer()
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_TEMPLATE,
    )
    ids = tokenizer.get_vocab()
    config = Qwen2_5_VLConfig(
        vision_config={"depth": 4, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                       "in_channels": 3, "out_hidden_size": 64, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
                       "fullatt_block_indexes": [1, 3], "hidden_act": "silu"},
        text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2,
                     "vocab_size": len(tokenizer), "tie_word_embeddings": True,
                     "max_position_embeddings": 8192, "bos_token_id": None,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                         "mrope_section": [2, 3, 3]},
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
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


LAYOUTS = {"InternVL3-1B-hf": internvl3_1b, "Qwen2.5-VL-3B-Instruct": qwen2_5_vl_3b}
