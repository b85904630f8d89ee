"""The evaluation's typed settings (``evaluation`` in parameters_evaluation.yml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from emit_iad.params import choice, reject_unknown

EVALUATION_FILE = "conf/base/parameters_evaluation.yml"


@dataclass(frozen=True)
class EvaluationConfig:
    """``evaluation`` of parameters_evaluation.yml: every stage that scores a model (evaluation,
    the ablation) reads these fields, and a default lives here only."""

    models: list = field(default_factory=lambda: ["base", "sft", "grpo"])
    mmad_json: str | None = None
    image_root: str | None = None
    prompt: dict = field(default_factory=dict)
    domain_knowledge_json: str | None = None
    batch_size: int = 16
    scoring: str = "strict"
    max_new_tokens: int = 128
    dtype: str = "auto"
    device: str = "cpu"
    on_error: str = "fail"
    models_dir: str = "data/06_models"
    promote_in_experiments: bool = False
    work_dir: str = "data/07_model_output/partial"
    baselines: list = field(default_factory=lambda: ["gpt-4o"])  # published MMAD rows (radar)
    llm: dict = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: dict) -> EvaluationConfig:
        from emit_iad.mmad.scoring import SCORING_MODES
        from emit_iad.vlm.chat import PromptConfig

        reject_unknown(cls, params, f"{EVALUATION_FILE} (`evaluation`)")
        config = cls(**params)
        choice("scoring", config.scoring, SCORING_MODES, EVALUATION_FILE)
        choice("on_error", config.on_error, ("fail", "skip"), EVALUATION_FILE)
        PromptConfig.from_params(config.prompt)
        return config


def evaluation_config(settings: dict | EvaluationConfig | None) -> EvaluationConfig:
    """The typed settings of a raw ``evaluation`` section (or the config itself)."""
    if isinstance(settings, EvaluationConfig):
        return settings
    return EvaluationConfig.from_params(dict(settings or {}))
