"""Peak GPU memory of conf/gpu's SFT and GRPO steps (InternVL3-8B, bf16), estimated on the CPU.

Measured here: the bytes a real-width layer keeps for backward, per token, in bf16 with LoRA —
one decoder layer of InternVL3-8B's text model (Qwen2.5-7B shape) and one InternViT-300M layer —
with and without (non-reentrant) gradient checkpointing. Everything else is arithmetic on
InternVL3-8B's published configuration and conf/gpu's settings; the memory model is printed
term by term so each figure can be checked. Attention probabilities are not counted: on GPUs
SDPA / flash attention keeps O(T) for backward, the CPU's math kernel O(T²).

    python benchmarks/memory_8b.py            # ~1 min, ~3 GB of RAM

The rollout and validation phases are ``generate()``: the KV cache of every sequence decoded
together (``grpo.generate_batch`` prompts × G at conf/gpu), and the prefill's working set over
all their prompt tokens. ``benchmarks/gpu_check.py`` prints these estimates beside what a GPU
measures.
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


@dataclass(frozen=True)
class Dims:
    """What the memory model needs of a model: InternVL3-8B-hf's by default (config.json)."""

    hidden: int = TEXT.hidden_size
    intermediate: int = TEXT.intermediate_size
    heads: int = TEXT.num_attention_heads
    kv_heads: int = TEXT.num_key_value_heads
    layers: int = TEXT_LAYERS
    vocab: int = TEXT.vocab_size
    vision_hidden: int = VISION.hidden_size
    vision_intermediate: int = VISION.intermediate_size
    vision_layers: int = VISION_LAYERS
    params: float = PARAMS_8B
    tokens_per_tile: int = TOKENS_PER_TILE
    vision_tokens_per_tile: int = VISION_TOKENS_PER_TILE

    @property
    def kv_bytes_per_token(self) -> int:
        """bf16 keys and values of every layer."""
        return 2 * self.kv_heads * (self.hidden // self.heads) * 2 * self.layers

    @property
    def prefill_bytes_per_token(self) -> int:
        """The largest working set of one decoder layer in inference (no grad), bf16: the MLP's
        gate, up and their product beside the residual stream and its norm."""
        return 2 * (3 * self.intermediate + 2 * self.hidden)

    @property
    def vision_bytes_per_token(self) -> int:
        return 2 * (2 * self.vision_intermediate + 2 * self.vision_hidden)


@dataclass
class Step:
    """One phase's shape on one GPU. Training phases hold ``rows`` sequences for one backward;
    generation phases hold ``sequences`` (prompts per generate() × completions per prompt)."""

    name: str
    rows: int  # sequences held for one backward (micro-batch)
    tokens: int  # tokens per sequence
    tiles: int  # image tiles per sequence (vision tower input)
    logit_tokens: int  # positions whose logits are computed (completion / target only)
    trainable: float  # trainable parameters
    sequences: int = 0  # generate(): sequences decoded together
    prompt_tokens: int = 0
    new_tokens: int = 0
    # measured shapes (benchmarks/gpu_check.py) instead of tiles × the model's tokens per tile
    vision_tokens: int | None = None  # vision-tower tokens per sequence
    image_tokens: int | None = None  # image tokens in the prompt per sequence

    def vision(self, dims: Dims) -> int:
        return self.tiles * dims.vision_tokens_per_tile if self.vision_tokens is None else (
            self.vision_tokens)

    def images(self, dims: Dims) -> int:
        return self.tiles * dims.tokens_per_tile if self.image_tokens is None else (
            self.image_tokens)


TERMS = ("weights (bf16)", "trainable: bf16 grads + fp32 masters + AdamW", "activations",
         "logits (bf16 + fp32 row)", "KV cache", "prefill / encode work")  # fmt: skip


def estimate(step: Step, per_token: dict[str, float], ckpt: bool,
             dims: Dims = Dims()) -> dict[str, float]:  # fmt: skip
    """GiB per term (``TERMS``). ``per_token``: bytes kept for backward per token and layer,
    measured (``text_full``, ``text_ckpt``, ``vision_full``, ``vision_ckpt``)."""
    key = "ckpt" if ckpt else "full"
    text_tokens = step.rows * step.tokens
    vis_tokens = step.rows * step.vision(dims)
    acts = (text_tokens * per_token[f"text_{key}"] * dims.layers
            + vis_tokens * per_token[f"vision_{key}"] * dims.vision_layers)  # fmt: skip
    if ckpt and step.rows:  # one layer's full activations live again while it is recomputed
        acts += max(text_tokens * per_token["text_full"], vis_tokens * per_token["vision_full"])
    logits = (step.rows * step.logit_tokens * dims.vocab * 2
              + (step.logit_tokens * dims.vocab * 4 if step.rows else 0))  # fmt: skip
    # generate(): every sequence's KV cache, the prefill's widest layer over all prompt tokens
    # (the prompts are expanded G times before it), the image tiles encoded per sequence
    # (an upper bound), and the last position's fp32 logits
    seqs = step.sequences
    kv = seqs * (step.prompt_tokens + step.new_tokens) * dims.kv_bytes_per_token
    work = max(seqs * step.prompt_tokens * dims.prefill_bytes_per_token,
               seqs * step.vision(dims) * dims.vision_bytes_per_token)
    work += seqs * (step.images(dims) * dims.hidden * 2 + dims.vocab * 4)
    return {
        TERMS[0]: dims.params * 2 / GIB,
        TERMS[1]: step.trainable * (2 + 4 + 8) / GIB,
        TERMS[2]: acts / GIB,
        TERMS[3]: logits / GIB,
        TERMS[4]: kv / GIB,
        TERMS[5]: work / GIB,
    }


def conf_gpu_steps(args, dims: Dims = Dims()) -> list[Step]:
    """conf/gpu's phases on one GPU: SFT, GRPO update, GRPO rollout (``generate_batch`` × G),
    validation (16 prompts at a time) and the MMAD evaluation (``evaluation.batch_size``)."""
    # A 1-shot MMAD prompt: template + query, each up to max_tiles tiles + a thumbnail
    tiles = 2 * (args.max_tiles + 1)
    prompt = tiles * dims.tokens_per_tile + 9 + 256 + 400  # + soft prompt, heat tokens, text
    h = dims.hidden
    aligner = 4096 + 4096 * h + h * h + 2 * h  # mlp1: LayerNorm, two Linear layers
    fewshot = 9 * h + 16 * h + h + 2
    lora = dims.layers * 8 * (2 * 7168 + 2 * 4096 + 3 * 22528) + dims.vision_layers * 8 * (
        4 * 2048 + 2 * 5120
    )
    g = args.group_size
    return [
        Step("SFT (8 per GPU)", args.sft_micro, prompt + 120, tiles, 120, fewshot),
        Step(f"GRPO update (G {g})", args.grpo_micro, prompt + 512, tiles, 513,
             aligner + fewshot + lora),
        Step(f"GRPO rollout ({args.generate_batch} × G {g})", 0, 0, tiles, 0,
             aligner + fewshot + lora, args.generate_batch * g, prompt, 512),
        Step("GRPO validation (16 prompts)", 0, 0, tiles, 0, aligner + fewshot + lora, 16,
             prompt, 512),
        Step(f"evaluation ({args.eval_batch} prompts)", 0, 0, tiles, 0, 0, args.eval_batch,
             prompt, 1024),
    ]


def measure_per_token(tokens: int = 512) -> dict[str, float]:
    """Bytes kept for backward per token, one real-width layer each, with and without
    checkpointing (bf16, LoRA r 8)."""
    torch.manual_seed(0)
    per_token = {}
    for name, (module, width, n) in {
        "text": (text_layer()[0], TEXT.hidden_size, tokens),
        "vision": (vision_layer(), VISION.hidden_size, VISION_TOKENS_PER_TILE),
    }.items():
        x = torch.randn(1, n, width, dtype=torch.bfloat16)
        per_token[f"{name}_full"] = saved_bytes_per_token(module, x, ckpt=False)
        per_token[f"{name}_ckpt"] = saved_bytes_per_token(module, x, ckpt=True)
        del module
    return per_token


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512, help="tokens of the measured sequence")
    ap.add_argument("--max-tiles", type=int, default=6, help="conf/gpu: model.images.prompt")
    ap.add_argument("--sft-micro", type=int, default=2, help="conf/gpu: sft.micro_batch_size")
    ap.add_argument("--grpo-micro", type=int, default=2, help="conf/gpu: grpo.micro_batch_size")
    ap.add_argument("--group-size", type=int, default=8, help="conf/gpu: grpo.group_size")
    ap.add_argument("--generate-batch", type=int, default=1, help="conf/gpu: grpo.generate_batch")
    ap.add_argument("--eval-batch", type=int, default=8, help="conf/gpu: evaluation.batch_size")
    args = ap.parse_args()
    per_token = measure_per_token(args.tokens)
    print("Measured per token per layer (bf16, LoRA r 8):")
    for k, v in per_token.items():
        print(f"  {k:12s} {v / 1024:8.1f} KiB")
    steps = conf_gpu_steps(args)
    print(f"\n1-shot prompt: {steps[0].tiles} tiles ({args.max_tiles} + thumbnail per image), "
          f"≈{steps[2].prompt_tokens:,} tokens; micro-batches: SFT {args.sft_micro}, GRPO "
          f"{args.grpo_micro}")  # fmt: skip
    print(f"\n| step | checkpointing | {' | '.join(TERMS)} | peak GiB |")
    print("|---" * (len(TERMS) + 3) + "|")
    for step in steps:
        for ckpt in (False, True) if step.rows else (True,):
            terms = estimate(step, per_token, ckpt)
            cells = " | ".join(f"{v:.1f}" for v in terms.values())
            peak = sum(terms.values())
            flag = "✅" if peak <= 64 else "❌"
            mode = ("on" if ckpt else "off") if step.rows else "—"
            print(f"| {step.name} | {mode} | {cells} | {peak:.1f} {flag} |")
    print("\nGRPO rollout by generate_batch (prompts per generate() call, × G sequences):")
    for b in (1, 2, 4, 8):
        rollout = conf_gpu_steps(argparse.Namespace(**{**vars(args), "generate_batch": b}))[2]
        peak = sum(estimate(rollout, per_token, True).values())
        print(f"  generate_batch {b}: {b * args.group_size:3d} sequences, {peak:5.1f} GiB "
              f"{'✅' if peak <= 64 else '❌'}")


if __name__ == "__main__":
    main()
