"""Ranges and consistency of the parameters, checked for every section before a run starts.

The stages' typed configs check names and types, but only for the sections a pipeline reads
(importing them all would cost a stage without models ten seconds of torch). These rules need
no import, so every section is checked on every run: a negative step count or learning rate,
an unknown dtype, a device this machine lacks, splits that do not sum to 1, or a misspelt
section name stop the run before any node, model load or MLflow run. ``None`` means "unset"
wherever a rule allows the setting to be optional.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

from emit_iad.params import suggest

SECTIONS = ("ingestion", "descriptions", "qa", "model", "sft", "grpo", "evaluation", "ablation")
DTYPES = ("auto", "float32", "bfloat16", "float16")
MIXED_PRECISION = ("no", "bf16", "fp16")

_TRAINING_COUNTS = ("batch_size", "micro_batch_size", "grad_accum", "epochs",
                    "val_max_new_tokens", "keep_checkpoints")  # fmt: skip
_TRAINING_ZEROS = ("checkpoint_every", "val_max_questions", "weight_decay")
_LLM = {"concurrency": ">=1", "max_attempts": ">=1", "max_retries": ">=0", "timeout_s": ">0",
        "max_tokens": ">=1", "max_requests": ">=1", "max_cost_usd": ">0",
        "deadline_s": ">0"}  # fmt: skip

# section (dotted for nested blocks) -> {key: rule}; rules: ">0", ">=0", ">=1", "0..1"
RULES: dict[str, dict[str, str]] = {
    "ingestion": {"workers": ">=1"},
    "ingestion.synthetic": {"image_size": ">=1", "n_train_good": ">=0", "n_test_good": ">=0",
                            "n_test_per_defect": ">=0"},
    "descriptions": {"instances_per_object": ">=0", "instance_defect_share": "0..1",
                     "image_max_side": ">=1", "max_failed_share": "0..1"},
    "descriptions.llm": _LLM,
    "qa": {"n_templates": ">=0", "test_templates": ">=0", "text_query_share": "0..1"},
    "model.pretrain": {"epochs": ">=0", "lr": ">0", "batch_size": ">=1",
                       "val_max_questions": ">=0", "val_every": ">=1"},
    "model.fewshot": {"window": ">=0", "n_soft": ">=1"},
    "sft": {"lr": ">0", "warmup_ratio": "0..1", "max_grad_norm": ">0", "max_length": ">=1",
            "val_every": ">=1",
            **dict.fromkeys(_TRAINING_COUNTS, ">=1"), **dict.fromkeys(_TRAINING_ZEROS, ">=0"),
            "epochs": ">=0"},  # 0: no SFT, the model passes through (AnomalyR1: conf/qwen)
    "grpo": {"lr": ">0", "warmup_ratio": "0..1", "max_grad_norm": ">0", "group_size": ">=2",
             "max_new_tokens": ">=1", "generate_batch": ">=1", "steps": ">=1", "mu": ">=1",
             "temperature": ">0", "beta": ">=0", "eps_low": ">=0", "eps_high": ">=0",
             "max_resample_rounds": ">=0", "probe_prompts": ">=0", "sample_table_every": ">=0",
             "collective_timeout_s": ">0",
             **dict.fromkeys(_TRAINING_COUNTS, ">=1"), **dict.fromkeys(_TRAINING_ZEROS, ">=0")},
    "evaluation": {"batch_size": ">=1", "max_new_tokens": ">=1"},
    "evaluation.prompt": {"k_shot": ">=0"},
    "evaluation.llm": _LLM,
    "ablation": {"workers": ">=1"},
}
RULES["ablation.grpo"] = RULES["grpo"]  # the ablation's overrides of grpo
_CHECKS: dict[str, Callable[[float], bool]] = {
    ">0": lambda v: v > 0, ">=0": lambda v: v >= 0, ">=1": lambda v: v >= 1,
    ">=2": lambda v: v >= 2, "0..1": lambda v: 0 <= v <= 1,
}  # fmt: skip
_SAYS = {">0": "must be > 0", ">=0": "must be >= 0", ">=1": "must be >= 1",
         ">=2": "must be >= 2", "0..1": "must lie in [0, 1]"}  # fmt: skip


def nest(params: dict) -> dict:
    """Dotted keys (``evaluation.mmad_json``, as runtime parameters may arrive) merged into
    their sections, so that they are checked like the others.

    >>> nest({"evaluation.mmad_json": "x", "evaluation": {"batch_size": 4}})
    {'evaluation': {'batch_size': 4, 'mmad_json': 'x'}}
    """
    out: dict = {k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()
                 if "." not in str(k)}  # fmt: skip
    for key, value in params.items():
        if "." not in str(key):
            continue
        *parents, leaf = str(key).split(".")
        tree = out
        for part in parents:
            tree = tree.setdefault(part, {}) if isinstance(tree.get(part, {}), dict) else {}
        tree[leaf] = value
    return out


def _block(params: dict, dotted: str):
    tree = params
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree if isinstance(tree, dict) else None


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def problems(params: dict, gpus: Callable[[], int] | None = None) -> Iterator[tuple[str, str]]:
    """``(dotted key, what is wrong and the fix)`` for every rule a value breaks.

    >>> list(problems({"grpo": {"steps": -5, "lr": 1e-5}, "ingestoin": {}}))
    [('ingestoin', "unknown section (did you mean 'ingestion'?): the sections are ingestion, \
descriptions, qa, model, sft, grpo, evaluation, ablation"), ('grpo.steps', '-5 must be >= 1')]
    """
    params = nest(params)
    for section in params:
        if section not in SECTIONS:
            yield section, (f"unknown section{suggest(section, SECTIONS)}: the sections are "
                            f"{', '.join(SECTIONS)}")  # fmt: skip
    for dotted, rules in RULES.items():
        block = _block(params, dotted)
        for key, rule in (rules.items() if block else ()):
            value = block.get(key)
            if value is None:
                continue
            if not _number(value) or (isinstance(value, float) and math.isnan(value)):
                yield f"{dotted}.{key}", f"{value!r} is not a number"
            elif not _CHECKS[rule](value):
                yield f"{dotted}.{key}", f"{value!r} {_SAYS[rule]}"
    yield from _consistency(params, gpus)


def _consistency(params: dict, gpus: Callable[[], int] | None) -> Iterator[tuple[str, str]]:
    split = (_block(params, "qa") or {}).get("split")
    shares = isinstance(split, dict) and all(_number(v) for v in split.values())
    if shares and (any(v < 0 for v in split.values())
                   or not math.isclose(sum(split.values()), 1.0)):  # fmt: skip
        yield "qa.split", f"{split} must be shares >= 0 that sum to 1"
    for section in ("model", "evaluation"):
        block = _block(params, section) or {}
        dtype = block.get("dtype")
        if dtype is not None and str(dtype) not in DTYPES:
            yield f"{section}.dtype", f"{dtype!r} is not one of {list(DTYPES)}"
        device = block.get("device")
        if device is not None:
            yield from _device(f"{section}.device", str(device), gpus)
    for section in ("sft", "grpo"):
        block = _block(params, section) or {}
        mixed = block.get("mixed_precision")
        if mixed not in (None, False) and str(mixed) not in MIXED_PRECISION:
            yield f"{section}.mixed_precision", f"{mixed!r} is not one of {list(MIXED_PRECISION)}"
        micro, batch = block.get("micro_batch_size"), block.get("batch_size")
        if section == "sft" and _number(micro) and _number(batch) and micro > batch:
            yield "sft.micro_batch_size", f"{micro} is more than sft.batch_size {batch}"


def _device(key: str, device: str, gpus: Callable[[], int] | None) -> Iterator[tuple[str, str]]:
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if device in ("cpu", "auto"):
        return
    if m is None:
        yield key, f"{device!r} is not a device: use cpu, auto, cuda or cuda:<index>"
        return
    count = (gpus or _cuda_count)()
    wanted = int(m.group(1) or 0)
    if wanted >= count:
        have = f"{count} GPU(s)" if count else "no GPU (or no CUDA build of torch)"
        yield key, f"{device!r}, but this machine has {have}: use cpu or auto"


def _cuda_count() -> int:
    import torch  # only when a GPU is asked for

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
