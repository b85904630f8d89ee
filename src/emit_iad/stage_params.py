"""Every stage's parameters checked before a run starts, each problem named with the file that
set it (conf/base, the environment's folder, conf/local, or the command line's ``--params``).

The stages' own typed configs do the checking (unknown keys with the nearest valid one, wrong
types, values out of range); this module finds who set the offending key.
"""

from __future__ import annotations

import dataclasses
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
# blocks inside a section that a typed config of their own reads
NESTED = {
    "ingestion.synthetic": ("emit_iad.sources.synthetic", "SyntheticConfig"),
    "descriptions.llm": ("emit_iad.llm_api.client", "ClientConfig"),
    "model.tiny": ("emit_iad.vlm.tiny", "TinyModelConfig"),
    "model.fewshot": ("emit_iad.vlm.fewshot", "FewShotConfig"),
    "sft.prompt": ("emit_iad.vlm.chat", "PromptConfig"),
    "grpo.prompt": ("emit_iad.vlm.chat", "PromptConfig"),
    "evaluation.prompt": ("emit_iad.vlm.chat", "PromptConfig"),
    "evaluation.llm": ("emit_iad.llm_api.client", "ClientConfig"),
}
# what the section's code gives a nested block before the YAML's keys, from the section's
# effective settings (SFTConfig.prompt_config, GRPOConfig.prompt_config, make_answerer)
CONTEXT = {
    "sft.prompt": lambda sft: {"answer_format": sft["answer_format"]},
    "grpo.prompt": lambda grpo: {"answer_format": "think"},
    "evaluation.llm": lambda ev: {
        "model": None, "temperature": 0.0, "max_tokens": ev["max_new_tokens"],
        "json_mode": False,
    },  # model: each openai:<model> of evaluation.models
}


def config_class(section: str) -> type:
    """The typed config of a section or of a nested block (imported on demand)."""
    module, name = CONFIG_CLASSES.get(section) or NESTED[section]
    return getattr(importlib.import_module(module), name)


def class_defaults(config_cls: type) -> dict:
    """Each field's default value (factories called; a required field has none)."""
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def plain(value):
    """YAML's and MLflow's form of a typed value: tuples as lists, recursively."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def section_defaults(section: str, parent: dict | None = None) -> dict:
    """The defaults of a section or a nested block; a block's with what its section's code
    gives it (``CONTEXT``, from the section's effective settings ``parent``)."""
    out = class_defaults(config_class(section))
    if section in CONTEXT and parent is not None:
        out.update(CONTEXT[section](parent))
    return out


def effective(parameters: dict) -> dict[str, dict]:
    """Every setting of every section as the stages use it: each typed default, then what the
    YAML (and ``--params``) set, nested blocks completed the same way (plain values)."""
    out: dict[str, dict] = {}
    for section in (s for s in CONFIG_CLASSES if "." not in s):
        given = parameters.get(section)
        if not isinstance(given, dict):
            continue
        drop = NODE_KEYS.get(section, ())
        values = {**section_defaults(section), **{k: v for k, v in given.items()
                                                  if k not in drop}}  # fmt: skip
        for dotted in (d for d in (*NESTED, *CONFIG_CLASSES) if d.startswith(f"{section}.")):
            key = dotted.split(".", 1)[1]
            if isinstance(values.get(key) or {}, dict):
                values[key] = {**section_defaults(dotted, values), **(values.get(key) or {})}
        out[section] = plain(values)
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (kedro-mlflow's names for parameters)."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


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


def defaulted(parameters: dict, read, values: dict[str, dict] | None = None) -> dict[str, object]:
    """The settings of the sections in ``read`` that no YAML key or ``--params`` set, with the
    value each stage uses (its typed default), flattened as kedro-mlflow names parameters. It
    logs only the keys given, so a run's MLflow page would otherwise lack every default.
    ``values``: :func:`effective` of ``parameters`` where the caller has it already."""
    from emit_iad.param_rules import nest

    parameters = nest(parameters)
    out: dict[str, object] = {}
    for section, used in (values or effective(parameters)).items():
        if section not in read:
            continue
        given = flatten({section: parameters.get(section) or {}})
        out.update({k: v for k, v in flatten({section: used}).items() if k not in given})
    return out
