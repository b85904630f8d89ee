"""Run a description backend over the image index: the ``descriptions`` table and its report."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import pandas as pd

from emit_iad.describe import mmad, openai_prompts, template
from emit_iad.describe.tasks import (
    DESCRIPTION_COLUMNS,
    REPORT_COLUMNS,
    DescriptionTask,
    plan_tasks,
)
from emit_iad.llm_api import ChatClient, ClientConfig, Failure, Job, Usage
from emit_iad.params import reject_unknown, setting

log = logging.getLogger(__name__)
BACKENDS = ("template", "openai", "mmad")
PARAMS_FILE = "conf/base/parameters_descriptions.yml"


@dataclass(frozen=True)
class DescribeConfig:
    """EMIT's GPT description synthesis (``descriptions`` in parameters_descriptions.yml lists
    what it changes)."""

    backend: str = setting("template", "template (offline, from metadata) | openai | mmad")
    seed: int = setting(0, "seed of the sampled images and instances")
    instances_per_object: int = setting(6, "object-instance texts per object")
    instance_defect_share: float = setting(0.5, "share of those instances that are defective")
    imagined_per_normal: float = setting(
        0.5, "defective instance texts per normal training image of a source with "
        "defect_images: false (EMIT: 2,635 anomalous texts for 4,910 normal images)")
    image_max_side: int = setting(512, "images are downscaled to this before they are sent")
    mmad: dict = setting(
        factory=dict, help="backend mmad: domain_knowledge (MMAD's json, or a list) and "
        "aliases (image-index dataset name -> key in the json)")
    llm: dict = setting(
        factory=dict, help="backend openai: model, base_url, concurrency, retries, budget, "
        "deadline_s, cache_dir (llm_api/client.py ClientConfig)")
    max_failed_share: float = setting(
        0.1, "more failed descriptions than this share (or all) stop the stage, its previous "
        "outputs untouched: an outage is not a result")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(
                f"descriptions.backend is {self.backend!r}; use one of {list(BACKENDS)} "
                f"in {PARAMS_FILE}"
            )
        if self.imagined_per_normal < 0:
            raise ValueError(f"descriptions.imagined_per_normal must be >= 0 ({PARAMS_FILE})")
        if not 0.0 <= self.instance_defect_share <= 1.0 or self.instances_per_object < 0:
            raise ValueError(
                "descriptions.instance_defect_share must be in [0, 1] and instances_per_object >= 0"
            )

    @classmethod
    def from_params(cls, params: dict) -> DescribeConfig:
        reject_unknown(cls, params, f"{PARAMS_FILE} (`descriptions`)")
        return cls(**params)


@dataclass
class Outcome:
    table: pd.DataFrame
    report: pd.DataFrame
    usage: Usage

    def metrics(self) -> dict[str, float]:
        counts = self.table.kind.value_counts()
        out = {f"rows.{k}": float(counts.get(k, 0)) for k in ("normal", "defect", "instance")}
        out["reported"] = float(len(self.report))
        out.update(self.usage.as_metrics("llm"))
        return out


def _row(task: DescriptionTask, backend: str, **values) -> dict:
    region = task.region if task.kind == "instance" else None  # an instance's own defect cell
    return {**task.ident(), "region": region, "backend": backend, **values}


def _problem(task: DescriptionTask, reason: str) -> dict:
    return {**task.ident(), "reason": reason}


def synthesize_descriptions(
    index: pd.DataFrame,
    config: DescribeConfig,
    credentials: dict | None = None,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> Outcome:
    """Describe every object of the index with the configured backend.

    Tasks a backend cannot do (no normal image, no MMAD entry, a reply still invalid after its
    retries) are listed in the report with the reason, never stored as descriptions.
    """
    if index.empty:
        raise ValueError("the image index is empty: run the ingestion stage first")
    tasks = plan_tasks(
        index, config.instances_per_object, config.instance_defect_share, config.seed,
        config.imagined_per_normal,
    )
    rows: list[dict] = []
    problems: list[dict] = []
    usage = Usage()
    if config.backend == "template":
        rows = [_row(t, "template", **template.describe(t, index)) for t in tasks]
    elif config.backend == "mmad":
        rows, problems = _mmad(tasks, index, config.mmad)
    else:
        # MMAD's own knowledge wherever its file has an entry (descriptions.mmad.domain_knowledge),
        # GPT for the rest: EMIT's texts for the datasets MMAD does not cover
        rows, left = _mmad_where_given(tasks, index, config.mmad)
        new, problems, usage = _openai(left, config, credentials or {}, progress)
        rows += new
    table = pd.DataFrame(rows, columns=DESCRIPTION_COLUMNS)
    report = pd.DataFrame(problems, columns=REPORT_COLUMNS)
    check_failures(len(report), len(tasks), config, report)
    if len(report):
        log.warning("%d description(s) could not be made; see the descriptions report", len(report))
    return Outcome(table, report, usage)


class DescriptionsFailed(RuntimeError):
    pass


def check_failures(failed: int, total: int, config: DescribeConfig, report: pd.DataFrame) -> None:
    """Raise when every description, or more than ``max_failed_share`` of them, failed."""
    if not total or not failed:
        return
    if failed < total and failed / total <= config.max_failed_share:
        return
    reasons = "; ".join(sorted(set(report["reason"].astype(str)))[:3])
    raise DescriptionsFailed(
        f"{failed} of {total} descriptions failed ({config.backend} backend; e.g. {reasons}), "
        f"more than descriptions.max_failed_share {config.max_failed_share:g} ({PARAMS_FILE}). "
        "Nothing was written: the previous descriptions stay as they were. Fix the cause (the "
        "endpoint, the key, the MMAD file) and run `kedro run --pipelines=descriptions` again; "
        "replies already received are cached and not paid for twice."
    )


def _mmad(tasks, index, settings: dict) -> tuple[list[dict], list[dict]]:
    path = settings.get("domain_knowledge")
    if not path:
        raise ValueError(f"set descriptions.mmad.domain_knowledge in {PARAMS_FILE}")
    knowledge = mmad.load_domain_knowledge(path)
    aliases = {**mmad.DEFAULT_ALIASES, **(settings.get("aliases") or {})}
    rows, problems = [], []
    for t in tasks:
        if t.kind == "instance":  # MMAD has no instance texts: compose them offline
            rows.append(_row(t, "template", **template.describe(t, index)))
            continue
        key = "good" if t.kind == "normal" else t.defect
        found = mmad.lookup(knowledge, t.dataset, t.object, key, aliases)
        if found is None:
            problems.append(_problem(t, f"no entry {t.dataset}/{t.object}/{key} in {path}"))
            continue
        _, text, effect = found
        digest = mmad.entry_hash(t.dataset, t.object, key, text)
        rows.append(
            _row(t, "mmad", text=text, effect=effect, model=mmad.MMAD_MODEL, request_hash=digest)
        )
    return rows, problems


def _mmad_where_given(tasks, index, settings: dict) -> tuple[list[dict], list]:
    """Normal and defect texts from MMAD's file where it has them; the other tasks, to ask."""
    if not settings.get("domain_knowledge"):
        return [], list(tasks)
    known = [t for t in tasks if t.kind != "instance"]
    rows, problems = _mmad(known, index, settings)
    missing = {(p["kind"], p["dataset"], p["object"], p["defect"]) for p in problems}
    left = [t for t in tasks if t.kind == "instance"
            or (t.kind, t.dataset, t.object, t.defect) in missing]  # fmt: skip
    return rows, left


def _openai(tasks, config: DescribeConfig, credentials: dict, progress):
    client_config = ClientConfig.from_params(config.llm)
    client = ChatClient(
        client_config,
        api_key=credentials.get("api_key"),
        organization=credentials.get("organization"),
        base_url=credentials.get("base_url"),
    )
    problems, runnable = [], []
    for t in tasks:
        needs = t.reference_path if t.kind == "normal" or t.image_path is None else t.image_path
        if needs is None:
            problems.append(_problem(t, "no normal image of this object to show the model"))
        else:
            runnable.append(t)
    jobs = [
        Job(
            openai_prompts.messages(t, config.image_max_side),
            partial(openai_prompts.parse_reply, t.kind),
        )
        for t in runnable
    ]
    rows = []
    for t, result in zip(runnable, client.map(jobs, progress), strict=True):
        if isinstance(result, Failure):
            problems.append(_problem(t, result.reason))
            continue
        text, effect = result.value
        rows.append(
            _row(t, "openai", text=text, effect=effect, model=client_config.model,
                 request_hash=result.key)
        )  # fmt: skip
    usage = client.budget.usage
    log.info(
        "LLM: %d requests, %d cache hits, %d+%d tokens, $%.4f",
        usage.requests, usage.cache_hits, usage.prompt_tokens, usage.completion_tokens,
        usage.cost_usd,
    )  # fmt: skip
    return rows, problems, usage
