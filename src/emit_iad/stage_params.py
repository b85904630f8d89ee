"""Every stage's parameters checked before a run starts, each problem named with the file that
set it (conf/base, the environment's folder, conf/local, or the command line's ``--params``).

The stages' own typed configs do the checking (unknown keys with the nearest valid one, wrong
types, values out of range); this module finds who set the offending key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from emit_iad.params import ParamError, choice, reject_unknown, setting

INGESTION_FILE = "conf/base/parameters_ingestion.yml"


@dataclass(frozen=True)
class IngestionConfig:
    """Which dataset folders to index (``ingestion`` in parameters_ingestion.yml)."""

    sources: list = setting(
        factory=list, help="one entry per dataset root: SourceConfig fields (name, layout, "
        "root, objects, defect_images, options; sources/index.py)")
    on_error: str = setting(
        "fail", "fail: stop at the first bad file | skip: leave it out, list it in the report")
    workers: int = setting(4, "threads decoding images")
    synthetic: dict = setting(
        factory=dict, help="the offline dataset's generator: SyntheticConfig fields "
        "(sources/synthetic.py)")

    @classmethod
    def from_params(cls, params: dict) -> IngestionConfig:
        from emit_iad.sources import SourceConfig, SyntheticConfig

        reject_unknown(cls, params, f"{INGESTION_FILE} (`ingestion`)")
        config = cls(**params)
        choice("on_error", config.on_error, ("fail", "skip"), INGESTION_FILE)
        for entry in config.sources:
            SourceConfig.from_params(entry)
        SyntheticConfig.from_params(config.synthetic or {})
        return config


# section of the parameters -> (module, class) of its typed config; model.pretrain has its own
CONFIG_CLASSES = {
    "ingestion": ("emit_iad.stage_params", "IngestionConfig"),
    "descriptions": ("emit_iad.describe.synthesize", "DescribeConfig"),
    "qa": ("emit_iad.mmad.build", "QAConfig"),
    "model": ("emit_iad.vlm.build", "ModelConfig"),
    "model.pretrain": ("emit_iad.train.pretrain", "PretrainConfig"),
    "sft": ("emit_iad.train.sft", "SFTConfig"),
    "grpo": ("emit_iad.train.grpo.config", "GRPOConfig"),
    "evaluation": ("emit_iad.evaluate.config", "EvaluationConfig"),
    "ablation": ("emit_iad.experiments.ablation", "AblationConfig"),
}
NODE_KEYS = {"sft": ("checkpoint_dir",), "grpo": ("checkpoint_dir",)}  # the node's, not the loop's


def config_class(section: str) -> type:
    """The typed config of a section (imported on demand)."""
    module, name = CONFIG_CLASSES[section]
    return getattr(importlib.import_module(module), name)


def stage_configs() -> dict[str, Callable[[dict], object]]:
    """Section of the parameters -> the typed config that checks it. Each config is imported when
    its section is checked: a stage without models then starts without torch (5 s on 2 cores)."""

    def lazy(section: str):
        def check(params):
            drop = NODE_KEYS.get(section, ())
            return config_class(section).from_params(
                {k: v for k, v in params.items() if k not in drop})

        return check

    def model(params):
        from emit_iad.train.pretrain import PretrainConfig
        from emit_iad.vlm.build import ModelConfig

        PretrainConfig.from_params(params.get("pretrain"))
        return ModelConfig.from_params(params)

    checks = {s: lazy(s) for s in CONFIG_CLASSES if "." not in s}
    checks["model"] = model
    return checks


def _sets(tree, dotted: list[str]) -> bool:
    for part in dotted:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def locator(
    conf_root: str | Path, env: str | None, runtime: dict | None,
    base_env: str = "base", default_env: str = "local",
) -> Callable[[str, str], str]:  # fmt: skip
    """``where(section, key)``: the highest-precedence source that sets ``section.key``: the
    command line (``--params``), then conf/<env>, then conf/base."""
    conf_root = Path(conf_root)
    folders = [conf_root / (env or default_env), conf_root / base_env]

    def where(section: str, key: str) -> str:
        flat = runtime or {}
        if f"{section}.{key}" in flat or _sets(flat, [section, key]):
            return "the command line (--params)"
        for folder in folders:
            for path in sorted(folder.glob("**/parameters*.yml")) if folder.is_dir() else []:
                try:
                    data = yaml.safe_load(path.read_text()) or {}
                except yaml.YAMLError:
                    continue
                if _sets(data, [section, key]):
                    try:
                        return str(path.relative_to(conf_root.parent))
                    except ValueError:
                        return str(path)
        return f"{folders[-1]} (a default)"

    return where


def validate(sections: dict[str, dict], where: Callable[[str, str], str] | None = None,
             read: set[str] | None = None) -> None:
    """Check every section: the ranges and consistency rules of :mod:`emit_iad.param_rules`
    for all of them, and each section in ``read`` (default: all) with its stage's typed
    config. One error lists every problem, each with the file that set it (``where``)."""
    from emit_iad.param_rules import nest
    from emit_iad.param_rules import problems as rule_problems

    sections = nest(sections)  # `evaluation.mmad_json=…` runtime overrides into their section
    configs, problems = stage_configs(), []
    for section, values in sections.items():
        if section not in configs or not isinstance(values, dict):
            continue
        if read is not None and section not in read:
            continue
        try:
            configs[section](values)
        except ParamError as exc:
            key = exc.keys[0] if exc.keys else ""
            source = where(section, key) if where and key else None
            problems.append(f"{section}.{key}: {exc.problem} (set in {source})" if source
                            else f"{section}: {exc}")  # fmt: skip
        except (ValueError, TypeError) as exc:
            problems.append(f"{section}: {exc}")
    for dotted, problem in rule_problems(sections):
        section, _, rest = dotted.partition(".")
        source = where(section, rest.split(".")[0]) if where and rest else None
        line = f"{dotted}: {problem}" + (f" (set in {source})" if source else "")
        if not any(p.startswith(f"{dotted}:") for p in problems):  # the typed check said it
            problems.append(line)
    if problems:
        raise ParamError("invalid parameters, nothing was run:\n  " + "\n  ".join(problems))
