"""The base model of the workflow: the tiny InternVL built offline, or a pretrained VLM."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from emit_iad.params import reject_unknown
from emit_iad.vlm import chat
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
from emit_iad.vlm.loading import load_pretrained
from emit_iad.vlm.tiny import REASONING_TAGS, TinyModelConfig, build_tiny_model

PARAMS_FILE = "conf/base/parameters_model.yml"


@dataclass(frozen=True)
class ModelConfig:
    """Mirrors ``model`` in parameters_model.yml."""

    source: str = "tiny"  # tiny | pretrained
    name_or_path: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    tiny: dict = field(default_factory=dict)
    fewshot: dict = field(default_factory=dict)
    sanity: dict = field(default_factory=dict)
    # image-processor settings, kept with the model so every stage sees images alike:
    # prompt (InternVL's tiling: crop_to_patches, min_patches, max_patches, size) and heatmap
    # (the few-shot query and template; one tile by default)
    images: dict = field(default_factory=dict)
    # the tiny model's general warm-up on normal images (train/pretrain.py); a pretrained VLM
    # has that ability already and skips it
    pretrain: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source not in ("tiny", "pretrained"):
            raise ValueError(f"model.source must be 'tiny' or 'pretrained' ({PARAMS_FILE})")
        if self.source == "pretrained" and not self.name_or_path:
            raise ValueError(f"model.source: pretrained needs model.name_or_path ({PARAMS_FILE})")
        if bad := set(self.images) - {"prompt", "heatmap"}:
            raise ValueError(
                f"model.images: unknown {sorted(bad)}; use prompt, heatmap ({PARAMS_FILE})"
            )

    @classmethod
    def from_params(cls, params: dict) -> ModelConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`model`)")
        return cls(**params)

    def images_meta(self) -> dict:
        return {k: dict(v) for k, v in self.images.items() if v is not None}

    def fewshot_config(self) -> FewShotConfig | None:
        settings = dict(self.fewshot)
        if not settings.pop("enabled", True):
            return None
        return FewShotConfig.from_dict(settings)


def corpus(*tables: pd.DataFrame) -> Iterable[str]:
    """Every text a prompt or a target can contain: questions, options, descriptions, the
    protocol's sentences and the reasoning tags."""
    yield from (chat.INSTRUCTION, chat.PLAIN_ANSWER, chat.THINK_ANSWER, chat.QUERY_TEXT,
                chat.TEMPLATE_TEXT, chat.KNOWLEDGE_TEXT, " ".join(REASONING_TAGS))  # fmt: skip
    for t in tables:
        for col in ("question", "query_text", "text", "effect"):
            if col in t:
                yield from t[col].dropna().astype(str)
        if "options" in t:
            yield from (" ".join(map(str, o)) for o in t["options"])


def build_base_model(config: ModelConfig, texts: Iterable[str]) -> VLM:
    fs = config.fewshot_config()
    if config.source == "pretrained":
        vlm = load_pretrained(config.name_or_path, config.dtype, config.device, fs is not None, fs)
        vlm.meta.update(stage="base", source="pretrained", images=config.images_meta())
        return vlm
    tiny = TinyModelConfig(**config.tiny)
    model, processor = build_tiny_model(texts, tiny)
    fewshot = FewShotModule(tiny.hidden_size, fs) if fs is not None else None
    meta = {"stage": "base", "source": "tiny", "base_model": None, "images": config.images_meta()}
    return VLM(model, processor, fewshot, meta)
