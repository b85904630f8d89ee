"""A tiny InternVL built from a config: the offline default model.

``InternVLForConditionalGeneration`` (InternViT-style vision tower + Qwen2 text model), a
byte-level BPE tokenizer trained on the project's own text, and a chat template, wrapped in an
``InternVLProcessor`` so that ``AutoModelForImageTextToText`` / ``AutoProcessor`` load it like
any InternVL3-hf checkpoint. Same architecture, same code path as InternVL3-8B, only smaller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GotOcr2ImageProcessor,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    InternVLVideoProcessor,
    PreTrainedTokenizerFast,
)

from emit_iad.params import setting

FEWSHOT_TOKEN = "<FS_PROMPT>"  # placeholder replaced by EMIT's soft prompt + heatmap tokens
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>",
    "<img>", "</img>", "<IMG_CONTEXT>", "<video>", FEWSHOT_TOKEN,
]  # fmt: skip
REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]  # plain text, kept in decoding

# Qwen-style chat template: text and image parts in order; each image is one <IMG_CONTEXT>,
# which the processor expands to <img> + N context tokens + </img>.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Size knobs; mirrors ``model.tiny`` in parameters_model.yml."""

    vocab_size: int = setting(2000, "tokenizer vocabulary, trained on the project's texts")
    hidden_size: int = setting(128, "the LLM's width (Qwen2 layout)")
    text_layers: int = setting(2, "LLM decoder layers")
    text_heads: int = setting(4, "LLM attention heads")
    text_kv_heads: int = setting(2, "LLM key/value heads (grouped-query attention)")
    text_intermediate: int = setting(256, "LLM MLP width")
    vision_hidden: int = setting(64, "vision tower width (InternViT layout)")
    vision_layers: int = setting(2, "vision tower layers")
    vision_heads: int = setting(4, "vision tower attention heads")
    vision_intermediate: int = setting(128, "vision tower MLP width")
    image_size: int = setting(
        64, "the vision tower's input side in pixels (a multiple of 2 patches)")
    patch_size: int = setting(8, "patch side in pixels")
    seed: int = setting(0, "seed of the random initial weights")

    def __post_init__(self) -> None:
        if self.image_size % (2 * self.patch_size):
            raise ValueError("model.tiny.image_size must be a multiple of 2 * patch_size")

    @property
    def image_seq_length(self) -> int:
        # pixel shuffle with downsample ratio 0.5 merges 2x2 patches into one token
        return (self.image_size // self.patch_size) ** 2 // 4


def train_tokenizer(texts: Iterable[str], vocab_size: int,
                    fewshot: bool = True) -> PreTrainedTokenizerFast:  # fmt: skip
    """Byte-level BPE trained on ``texts`` with InternVL's image tokens as special tokens
    (and EMIT's ``<FS_PROMPT>`` unless ``fewshot`` is false, as in a published checkpoint)."""
    specials = [t for t in SPECIAL_TOKENS if fewshot or t != FEWSHOT_TOKEN]
    extra = {"start_image_token": "<img>", "end_image_token": "</img>",
             "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}  # fmt: skip
    if fewshot:
        extra["fewshot_token"] = FEWSHOT_TOKEN
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in REASONING_TAGS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        padding_side="left",
        extra_special_tokens=extra,
    )


def build_processor(
    tokenizer: PreTrainedTokenizerFast, config: TinyModelConfig
) -> InternVLProcessor:
    size = {"height": config.image_size, "width": config.image_size}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False, max_patches=1),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=config.image_seq_length,
        chat_template=CHAT_TEMPLATE,
    )


def build_tiny_model(
    texts: Iterable[str], config: TinyModelConfig
) -> tuple[InternVLForConditionalGeneration, InternVLProcessor]:
    """Train the tokenizer on ``texts`` and build a randomly initialised tiny InternVL."""
    tokenizer = train_tokenizer(texts, config.vocab_size)
    processor = build_processor(tokenizer, config)
    model_config = InternVLConfig(
        vision_config={
            "hidden_size": config.vision_hidden,
            "num_hidden_layers": config.vision_layers,
            "num_attention_heads": config.vision_heads,
            "intermediate_size": config.vision_intermediate,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
        },
        text_config={
            "model_type": "qwen2",
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.text_layers,
            "num_attention_heads": config.text_heads,
            "num_key_value_heads": config.text_kv_heads,
            "intermediate_size": config.text_intermediate,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 4096,
            "tie_word_embeddings": True,
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=config.image_seq_length,
        downsample_ratio=0.5,
    )
    torch.manual_seed(config.seed)
    model = InternVLForConditionalGeneration(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model, processor
