"""The evaluation's typed settings (``evaluation`` in parameters_evaluation.yml)."""

from __future__ import annotations

from dataclasses import dataclass

from emit_iad.params import choice, reject_unknown, setting

EVALUATION_FILE = "conf/base/parameters_evaluation.yml"


@dataclass(frozen=True)
class EvaluationConfig:
    """``evaluation`` of parameters_evaluation.yml: every stage that scores a model (evaluation,
    the ablation) reads these fields, and a default lives here only."""

    models: list = setting(
        factory=lambda: ["base", "sft", "grpo"], help="base | sft | grpo (stage outputs), a "
        "local path or hub name, models:/emit-iad-grpo@champion, openai:gpt-4o")
    mmad_json: str | None = setting(
        None, "the benchmark (null: the qa stage's test split); the real MMAD: "
        "/data/MMAD/mmad.json")
    image_root: str | None = setting(None, "the benchmark's image folder, e.g. /data/MMAD")
    prompt: dict = setting(
        factory=dict, help="PromptConfig fields: k_shot (MMAD: 1), template_source, "
        "answer_format (plain | think), domain_knowledge, protocol (mmad | emit)")
    domain_knowledge_json: str | None = setting(
        None, "MMAD's domain_knowledge.json, for prompt.domain_knowledge")
    batch_size: int = setting(16, "questions per generate() call")
    scoring: str = setting(
        "strict", "strict: an unreadable answer is wrong | mmad: as MMAD's summary.py (drops "
        "unreadable answers and the one after each); reports show both")
    max_new_tokens: int = setting(128, "greedy answer cap in tokens (MMAD: 128; EMIT: 1,024)")
    dtype: str = setting("auto", "weights' dtype for scoring: auto | float32 | bfloat16")
    device: str = setting("cpu", "cpu | cuda | auto")
    on_error: str = setting(
        "fail", "fail | skip (bad entries listed in evaluation_report.csv)")
    models_dir: str = setting("data/06_models", "where the stage models base, sft, grpo are")
    promote_in_experiments: bool = setting(
        False, "a `dvc exp run` records scores on the registry but moves no champion alias")
    work_dir: str = setting(
        "data/07_model_output/partial", "resumable answers of interrupted runs")
    baselines: list = setting(
        factory=lambda: ["gpt-4o"], help="published MMAD rows shown in the radar")
    llm: dict = setting(
        factory=dict, help="for openai:<model>: concurrency, max_retries, timeout_s, "
        "temperature, max_tokens, deadline_s, cache_dir (llm_api/client.py)")

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


def scored_benchmark(settings: dict | None) -> tuple[str | None, str | None]:
    """``evaluation.mmad_json`` and ``image_root`` of a raw section, their defaults the typed
    config's, without the rest of its checks (the qa stage and the guards start without
    torch)."""
    keys = ("mmad_json", "image_root")
    config = EvaluationConfig(**{k: v for k, v in (settings or {}).items() if k in keys})
    return config.mmad_json, config.image_root


def evaluation_config(settings: dict | EvaluationConfig | None) -> EvaluationConfig:
    """The typed settings of a raw ``evaluation`` section (or the config itself)."""
    if isinstance(settings, EvaluationConfig):
        return settings
    return EvaluationConfig.from_params(dict(settings or {}))
