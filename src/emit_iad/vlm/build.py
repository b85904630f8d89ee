"""The base model of the workflow: the tiny InternVL built offline, or a pretrained VLM."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from emit_iad.params import reject_unknown, setting
from emit_iad.vlm import chat
from emit_iad.vlm.bundle import VLM
from emit_iad.vlm.fewshot import FewShotConfig, FewShotModule
from emit_iad.vlm.loading import load_pretrained
from emit_iad.vlm.tiny import REASONING_TAGS, TinyModelConfig, build_tiny_model

PARAMS_FILE = "conf/base/parameters_model.yml"


@dataclass(frozen=True)
class ModelConfig:
    """The base model (``model`` in parameters_model.yml lists what it changes)."""

    source: str = setting("tiny", "tiny (built from a config) | pretrained")
    name_or_path: str | None = setting(
        None, "pretrained: OpenGVLab/InternVL3-8B-hf, Qwen/Qwen2.5-VL-3B-Instruct or a folder")
    dtype: str = setting("float32", "float32 | bfloat16 | float16 | auto")
    device: str = setting("cpu", "cpu | cuda | auto")
    tiny: dict = setting(factory=dict, help="TinyModelConfig fields (vlm/tiny.py)")
    fewshot: dict = setting(
        factory=dict, help="EMIT's heatmap-guided soft prompt: FewShotConfig fields, and "
        "enabled (vlm/fewshot.py)")
    sanity: dict = setting(
        factory=dict, help="raw-heatmap AUROC on the test queries: max_images, overlays, "
        "image_size")
    images: dict = setting(
        factory=dict, help="image-processor settings kept with the model: prompt (InternVL "
        "tiling: crop_to_patches, min_patches, max_patches, size) and heatmap (one tile: null)")
    pretrain: dict = setting(
        factory=dict, help="the tiny model's general warm-up on normal images: PretrainConfig "
        "fields (train/pretrain.py); a pretrained VLM skips it")

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
