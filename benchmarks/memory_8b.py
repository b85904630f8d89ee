"""Peak GPU memory of conf/gpu's SFT and GRPO steps (InternVL3-8B, bf16), estimated on the CPU.

Measured here: the bytes a real-width layer keeps for backward, per token, in bf16 with LoRA —
one decoder layer of InternVL3-8B's text model (Qwen2.5-7B shape) and one InternViT-300M layer —
with and without (non-reentrant) gradient checkpointing. Everything else is arithmetic on
InternVL3-8B's published configuration and conf/gpu's settings; the memory model is printed
term by term so each figure can be checked. Attention probabilities are not counted: on GPUs
SDPA / flash attention keeps O(T) for backward, the CPU's math kernel O(T²).

    python benchmarks/memory_8b.py            # ~1 min, ~3 GB of RAM
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.checkpoint import checkpoint
from transformers import Qwen2Config
from transformers.models.internvl.configuration_internvl import InternVLVisionConfig
from transformers.models.internvl.modeling_internvl import InternVLVisionLayer
from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

GIB = 2**30
# InternVL3-8B-hf (config.json): Qwen2.5-7B text model, InternViT-300M, 448 px tiles of 256 tokens
TEXT = Qwen2Config(
    hidden_size=3584,
    intermediate_size=18944,
    num_attention_heads=28,
    num_key_value_heads=4,
    num_hidden_layers=28,
    vocab_size=151_674,
    attn_implementation="sdpa",
)
VISION = InternVLVisionConfig(
    hidden_size=1024,
    intermediate_size=4096,
    num_attention_heads=16,
    num_hidden_layers=24,
    image_size=448,
    patch_size=14,
    attn_implementation="sdpa",
)
PARAMS_8B = 7.94e9  # InternVL3-8B, all weights
TEXT_LAYERS, VISION_LAYERS = 28, 24
TOKENS_PER_TILE, VISION_TOKENS_PER_TILE = 256, 1025


class Wrap(torch.nn.Module):
    def __init__(self, layer, call):
        super().__init__()
        self.layer, self.call = layer, call

    def forward(self, x):
        return self.call(self.layer, x)


def saved_bytes_per_token(module: torch.nn.Module, x: torch.Tensor, ckpt: bool) -> float:
    """Bytes kept for backward per token (weights excluded; each storage counted once)."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    seen: dict[int, int] = {}

    n = x.shape[1]

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        quadratic = t.dim() >= 2 and t.shape[-1] == t.shape[-2] == n  # attention probabilities
        if ptr not in weights and not quadratic:
            seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    x = x.detach().requires_grad_(True)  # LoRA, or the few-shot tokens: input grads flow
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = checkpoint(module, x, use_reentrant=False) if ckpt else module(x)
    out.float().sum().backward()
    return sum(seen.values()) / n


def text_layer() -> tuple[torch.nn.Module, callable]:
    layer = Qwen2DecoderLayer(TEXT, 0).to(torch.bfloat16)
    rope = Qwen2RotaryEmbedding(TEXT)

    def call(layer, x):
        pos = torch.arange(x.shape[1])[None]
        cos, sin = rope(x, pos)
        return layer(x, position_embeddings=(cos, sin), position_ids=pos)[0]

    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=[
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    )
    return get_peft_model(Wrap(layer, call), lora), call


def vision_layer() -> torch.nn.Module:
    layer = InternVLVisionLayer(VISION).to(torch.bfloat16)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "fc1", "fc2"]
    )
    return get_peft_model(Wrap(layer, lambda layer, x: layer(x)[0]), lora)


@dataclass
class Step:
    """One optimizer step's shape on one GPU."""

    name: str
    rows: int  # sequences held for one backward (micro-batch)
    tokens: int  # tokens per sequence
    tiles: int  # image tiles per sequence (vision tower input)
    logit_tokens: int  # positions whose logits are computed (completion / target only)
    trainable: float  # trainable parameters
    kv_cache_tokens: int = 0  # rollout: KV cache of G sequences during generate()


def estimate(step: Step, per_token: dict[str, float], ckpt: bool) -> dict[str, float]:
    """GiB per term: weights, trainable states, activations, logits, KV cache."""
    key = "ckpt" if ckpt else "full"
    text_tokens, vis_tokens = (
        step.rows * step.tokens,
        step.rows * step.tiles * VISION_TOKENS_PER_TILE,
    )
    acts = (
        text_tokens * per_token[f"text_{key}"] * TEXT_LAYERS
        + vis_tokens * per_token[f"vision_{key}"] * VISION_LAYERS
    )
    if ckpt:  # one layer's full activations live again while it is recomputed
        acts += max(text_tokens * per_token["text_full"], vis_tokens * per_token["vision_full"])
    kv = 2 * TEXT.num_key_value_heads * (TEXT.hidden_size // TEXT.num_attention_heads) * 2
    return {
        "weights (bf16)": PARAMS_8B * 2 / GIB,
        "trainable: bf16 grads + fp32 AdamW": step.trainable * (2 + 8) / GIB,
        "activations": acts / GIB,
        "logits (bf16 + fp32 row)": step.rows * step.logit_tokens * TEXT.vocab_size * 2 / GIB
        + step.logit_tokens * TEXT.vocab_size * 4 / GIB,
        "KV cache (rollout)": step.kv_cache_tokens * kv * TEXT_LAYERS / GIB,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512, help="tokens of the measured sequence")
    ap.add_argument("--max-tiles", type=int, default=6, help="conf/gpu: model.images.prompt")
    ap.add_argument("--sft-micro", type=int, default=2, help="conf/gpu: sft.micro_batch_size")
    ap.add_argument("--grpo-micro", type=int, default=2, help="conf/gpu: grpo.micro_batch_size")
    args = ap.parse_args()
    torch.manual_seed(0)
    per_token = {}
    for name, (module, width, n) in {
        "text": (text_layer()[0], TEXT.hidden_size, args.tokens),
        "vision": (vision_layer(), VISION.hidden_size, VISION_TOKENS_PER_TILE),
    }.items():
        x = torch.randn(1, n, width, dtype=torch.bfloat16)
        per_token[f"{name}_full"] = saved_bytes_per_token(module, x, ckpt=False)
        per_token[f"{name}_ckpt"] = saved_bytes_per_token(module, x, ckpt=True)
        del module
    print("Measured per token per layer (bf16, LoRA r 8):")
    for k, v in per_token.items():
        print(f"  {k:12s} {v / 1024:8.1f} KiB")

    # A 1-shot MMAD prompt: template + query, each up to max_tiles tiles + a thumbnail
    tiles = 2 * (args.max_tiles + 1)
    prompt = tiles * TOKENS_PER_TILE + 9 + 256 + 400  # + soft prompt, heat tokens, text
    aligner = 4096 + 4096 * 3584 + 3584 * 3584 + 2 * 3584  # mlp1: LayerNorm, two Linear layers
    fewshot = 9 * 3584 + 16 * 3584 + 3584 + 2
    lora = TEXT_LAYERS * 8 * (2 * 7168 + 2 * 4096 + 3 * 22528) + VISION_LAYERS * 8 * (
        3 * 2048 + 2 * 5120
    )
    steps = [
        Step("SFT (8 per GPU)", args.sft_micro, prompt + 120, tiles, 120, aligner + fewshot),
        Step(
            "GRPO update (G 8)", args.grpo_micro, prompt + 512, tiles, 513, aligner + fewshot + lora
        ),
        Step("GRPO rollout (G 8)", 0, 0, 0, 0, aligner + fewshot + lora, 8 * (prompt + 512)),
    ]
    print(
        f"\n1-shot prompt: {tiles} tiles ({args.max_tiles} + thumbnail per image), ≈{prompt:,} "
        f"tokens; micro-batches: SFT {args.sft_micro}, GRPO {args.grpo_micro}"
    )
    print(
        f"\n| step | checkpointing | {' | '.join(estimate(steps[0], per_token, True))} | peak GiB |"
    )
    print("|---" * 8 + "|")
    for step in steps:
        for ckpt in (False, True):
            terms = estimate(step, per_token, ckpt)
            cells = " | ".join(f"{v:.1f}" for v in terms.values())
            peak = sum(terms.values())
            flag = "✅" if peak <= 64 else "❌"
            print(f"| {step.name} | {'on' if ckpt else 'off'} | {cells} | {peak:.1f} {flag} |")


if __name__ == "__main__":
    main()
