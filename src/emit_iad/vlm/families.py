"""The model families the project runs, one entry each: what the rest of the code reads about
a family (``docs/extending.md``, "A model family").

Adding a family (InternVL3.5, Qwen3-VL …) is one entry here, plus a shrunk random-weight builder
of its published configuration in :mod:`emit_iad.vlm.layouts` for the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.model_type of the whole model
    tower: str  # attribute name of the vision tower (its module name ends with it)
    aligner: str  # the vision-to-language projector's module name (EMIT's `mlp1`)
    # image-processor settings of the heatmap's query and template when the model's
    # images.heatmap says nothing ("square": resize to a square of that side first)
    heatmap_images: dict = field(default_factory=dict)
    # tokens of the prompt's image markup: a reply must never contain them
    structural_tokens: tuple[str, ...] = ()
    # the tower's attention and MLP projections, LoRA targets with ``lora.vision``
    vision_lora_targets: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "InternVL",
            model_types=("internvl",),
            tower="vision_tower",
            aligner="multi_modal_projector",  # InternVL's mlp1 in transformers' port
            heatmap_images={"crop_to_patches": False},  # one 448 px tile each: 32 x 32 patches
            structural_tokens=("<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
            vision_lora_targets=("q_proj", "k_proj", "v_proj", "projection_layer", "fc1", "fc2"),
        ),
        Family(
            "Qwen2.5-VL",
            model_types=("qwen2_5_vl", "qwen2_vl"),
            tower="visual",
            aligner="visual.merger",  # the patch merger
            heatmap_images={"square": 448},  # resized to 448 px: 32 x 32 patches
            structural_tokens=(
                "<|vision_start|>",
                "<|vision_end|>",
                "<|vision_pad|>",
                "<|image_pad|>",
                "<|video_pad|>",
            ),
            vision_lora_targets=("qkv", "proj", "gate_proj", "up_proj", "down_proj"),
        ),
    )
}
DEFAULT = FAMILIES["InternVL"]  # the tiny offline model is an InternVL


def family_of(config) -> Family:
    """The family of a model's config (by ``model_type``); an unknown type reads as InternVL,
    whose conventions transformers' other image-text models mostly share."""
    model_type = getattr(config, "model_type", "")
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    return DEFAULT


def _union(attr: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x for f in FAMILIES.values() for x in getattr(f, attr)))


TOWERS = tuple(f.tower for f in FAMILIES.values())
ALIGNERS = tuple(f.aligner for f in FAMILIES.values())
STRUCTURAL_TOKENS = _union("structural_tokens")
VISION_LORA_TARGETS = _union("vision_lora_targets")
