"""Evaluate a list of models on an MMAD-format benchmark: answers, accuracy tables, figures."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd

from emit_iad.describe.mmad import DEFAULT_ALIASES, load_domain_knowledge
from emit_iad.evaluate.answerers import ModelLoadError, ModelSpec, check_spec, make_answerer
from emit_iad.evaluate.config import EvaluationConfig, evaluation_config
from emit_iad.evaluate.runner import ANSWER_FIELDS, load_benchmark, run_benchmark
from emit_iad.mmad.format import benchmark_id
from emit_iad.mmad.scoring import (
    metrics_of,
    other_mode,
    score_answers,
    unparsed,
)
from emit_iad.vlm.bundle import META_FILE
from emit_iad.vlm.chat import PromptConfig
from emit_iad.vlm.registry import promote

log = logging.getLogger(__name__)
PARAMS_FILE = "conf/base/parameters_evaluation.yml"


@dataclass
class Evaluation:
    answers: dict[str, list[dict]] = field(default_factory=dict)  # model label -> MMAD answers
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # model label -> accuracy
    speed: dict[str, dict] = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    scoring: str = "strict"  # the mode of ``tables``; ``other`` holds the other mode's
    other: dict[str, pd.DataFrame] = field(default_factory=dict)
    unparsed: dict[str, int] = field(default_factory=dict)  # answers naming no letter A-E
    ids: dict[str, list[str]] = field(default_factory=dict)  # model label -> question ids

    def accuracy(self) -> pd.DataFrame:
        """All tables stacked, with ``model``, ``dataset`` and ``scoring`` columns (the
        primary mode's rows first)."""
        other = other_mode(self.scoring)
        frames = [t.rename_axis("dataset").reset_index().assign(model=m, scoring=mode)
                  for mode, tables in ((self.scoring, self.tables), (other, self.other))
                  for m, t in tables.items()]  # fmt: skip
        df = pd.concat(frames, ignore_index=True)
        first = ["model", "dataset", "scoring"]
        return df[[*first, *[c for c in df.columns if c not in first]]]

    def metrics(self) -> dict[str, dict[str, float]]:
        """Per model: the primary mode's metrics, the other mode's average and the count of
        unreadable answers."""
        out = {}
        for m, t in self.tables.items():
            out[m] = metrics_of(t)
            if m in self.other:
                out[m][f"average_{other_mode(self.scoring)}"] = metrics_of(self.other[m])["average"]
            out[m]["unparsed"] = float(self.unparsed.get(m, 0))
        return out


def _fingerprint(spec: ModelSpec, prompt: PromptConfig, benchmark: str,
                 config: EvaluationConfig) -> str:  # fmt: skip
    """Changes when the model files, the prompt, the benchmark's questions (``benchmark``: its
    :func:`benchmark_id`) or the decoding settings change: the key under which a model's answers
    are kept and resumed."""
    parts = [spec.kind, spec.ref, repr(prompt), benchmark,
             *(str(getattr(config, k)) for k in ("max_new_tokens", "dtype", "device"))]  # fmt: skip
    folder = Path(spec.ref)
    if folder.is_dir():
        parts += [f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                  for p in sorted(folder.rglob("*")) if p.is_file()]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def knowledge_from_mmad(path: str | None, aliases: dict | None = None) -> dict | None:
    """(dataset, object) -> domain-knowledge text, from MMAD's domain_knowledge.json."""
    if not path:
        return None
    data = load_domain_knowledge(path)
    names = {**DEFAULT_ALIASES, **(aliases or {})}
    out = {}
    for dataset, objects in data.items():
        for obj, entries in objects.items():
            text = "\n".join(v.strip() for v in entries.values() if isinstance(v, str))
            out[(dataset, obj)] = text
            for alias, key in names.items():
                if key == dataset:
                    out[(alias, obj)] = text
    return out


def evaluate_models(
    mmad_json: str,
    image_root: str,
    settings: dict | EvaluationConfig,
    credentials: dict | None = None,
    progress: Callable | None = None,
    stage_folders: dict[str, str] | None = None,
) -> Evaluation:
    """Answer and score the benchmark with every model of ``settings["models"]``; a stage
    name (base, sft, grpo) is the folder ``stage_folders`` gives (the catalog's), else
    ``<models_dir>/<stage>``."""
    config = evaluation_config(settings)
    if not config.models:
        raise ValueError(f"evaluation.models is empty in {PARAMS_FILE}")
    prompt = PromptConfig.from_params(config.prompt)
    knowledge = knowledge_from_mmad(config.domain_knowledge_json)
    if prompt.domain_knowledge and knowledge is None:
        raise ValueError(
            f"prompt.domain_knowledge needs evaluation.domain_knowledge_json ({PARAMS_FILE})"
        )
    questions, problems = load_benchmark(mmad_json, image_root, config.on_error)
    if questions.empty:
        raise ValueError(f"{mmad_json}: no question left to ask")
    _check_k_shot(questions, prompt, mmad_json)
    scoring = config.scoring
    specs = resolve_specs(config, stage_folders)  # every entry checked before any question
    result = Evaluation(problems=problems, scoring=scoring)
    work_dir = Path(config.work_dir)
    batch_size = config.batch_size
    benchmark = benchmark_id(mmad_json)  # read and hashed once, not per model
    for spec in specs:
        key = _fingerprint(spec, prompt, benchmark, config)
        work_file = work_dir / f"{spec.label}-{key}.jsonl"
        # a model's answers are kept under their key as soon as each batch is done: a later
        # failure (another model, the save of the outputs) never costs a finished model again
        answerer = _Lazy(lambda spec=spec: make_answerer(spec, config, prompt,
                                                         credentials or {}, knowledge))  # fmt: skip
        bar = (lambda it, n, label=spec.label: progress(it, n, label)) if progress else None
        answers, speed = run_benchmark(questions, answerer, work_file, batch_size, bar)
        for stale in work_dir.glob(f"{spec.label}-*.jsonl"):  # answers of an older model/setting
            if stale != work_file and stale.stem.rsplit("-", 1)[0] == spec.label:
                stale.unlink(missing_ok=True)
        result.answers[spec.label] = [{k: a[k] for k in ANSWER_FIELDS} for a in answers]
        result.ids[spec.label] = [a["id"] for a in answers]
        frame = pd.DataFrame(answers)
        result.tables[spec.label] = score_answers(frame, scoring)
        result.other[spec.label] = score_answers(frame, other_mode(scoring))
        result.unparsed[spec.label] = unparsed(frame)
        result.speed[spec.label] = speed
        log.info("%s: MMAD average %.2f (%d questions, %.1f q/s)", spec.label,
                 result.tables[spec.label].loc["Average", "Average"], len(answers),
                 speed["questions_per_s"])  # fmt: skip
    return result


def _check_k_shot(questions: pd.DataFrame, prompt: PromptConfig, mmad_json: str) -> None:
    """Every entry can show the ``k_shot`` templates asked for (it once showed 3 of 5 without
    a word), before any model is loaded."""
    column = f"{prompt.template_source}_templates"
    counts = questions.drop_duplicates("query_key")[column].map(len)
    short = int((counts < prompt.k_shot).sum())
    if prompt.k_shot and short:
        raise ValueError(
            f"evaluation.prompt.k_shot is {prompt.k_shot}, but {short} of {len(counts)} entries "
            f"of {mmad_json} have fewer {prompt.template_source} templates (as few as "
            f"{int(counts.min())}): lower k_shot to {int(counts.min())}, or use a benchmark "
            f"with more templates ({PARAMS_FILE})"
        )


class _Lazy:
    """An answerer made on its first question: a model whose answers are all kept is not even
    loaded again."""

    def __init__(self, make: Callable):
        self._make, self._inner = make, None

    def answer(self, records):
        if self._inner is None:
            self._inner = self._make()
        return self._inner.answer(records)


def resolve_specs(settings: dict | EvaluationConfig,
                  stage_folders: dict[str, str] | None = None) -> list[ModelSpec]:  # fmt: skip
    """Every entry of ``evaluation.models`` parsed and checked (folders complete, registry
    names and aliases existing, no label twice); all problems in one error."""
    config = evaluation_config(settings)
    specs, problems = [], []
    for text in config.models or []:
        spec = ModelSpec.parse(text, config.models_dir)
        if spec.kind == "stage" and stage_folders and spec.label in stage_folders:
            spec = dataclasses.replace(spec, ref=stage_folders[spec.label])
        if spec.label in {s.label for s in specs}:
            problems.append(f"evaluation.models names {spec.label!r} twice")
            continue
        try:
            check_spec(spec)
        except ModelLoadError as exc:
            problems.append(str(exc))
        specs.append(spec)
    if problems:
        raise ModelLoadError(f"evaluation.models ({PARAMS_FILE} or your environment's): "
                             + "; ".join(problems))  # fmt: skip
    return specs


def log_on_training_run(run_id: str | None, average: float) -> None:
    """``mmad/average`` on the run that trained the model, so the runs table shows it."""
    if not run_id:
        return
    try:
        mlflow.MlflowClient().log_metric(run_id, "mmad/average", average)
    except mlflow.exceptions.MlflowException as exc:  # the run was deleted, another store
        log.info("could not log mmad/average on run %s: %s", run_id, exc)


def promote_champions(specs: list[ModelSpec], averages: dict[str, float], benchmark: str,
                      move_alias: bool = True) -> dict[str, dict]:  # fmt: skip
    """For every stage model (sft, grpo) trained in a tracked run: record its MMAD average
    (``averages``, per model label, as saved in metrics.json) on its registered version
    ``emit-iad-<stage>`` and move the champion aliases to the best version on this benchmark
    (``move_alias`` false: record only). Returns what was done, per model label."""
    done = {}
    for spec in specs:
        label = spec.label
        meta_path = Path(spec.ref) / META_FILE
        if spec.kind != "stage" or label == "base" or not meta_path.is_file():
            continue
        if label not in averages:
            continue
        run_id = json.loads(meta_path.read_text()).get("mlflow_run_id")
        average = float(averages[label])
        log_on_training_run(run_id, average)
        outcome = promote(f"emit-iad-{label}", run_id, average, benchmark, move_alias)
        if outcome is None:
            log.info("%s: no registered version from run %s; no champion alias set", label, run_id)
            continue
        done[label] = outcome
        log.info("emit-iad-%s: version %d scored %.2f; champion is version %d (%.2f)", label,
                 outcome["version"], average, outcome["champion"],
                 outcome["champion_average"])  # fmt: skip
    return done


def per_question(evaluation: Evaluation) -> pd.DataFrame:
    """One row per model and question (with the question's id), and whether it was right."""
    rows = [{"model": m, "id": i, **a} for m, answers in evaluation.answers.items()
            for i, a in zip(evaluation.ids.get(m) or [None] * len(answers), answers,
                            strict=True)]  # fmt: skip
    return pd.DataFrame(rows).assign(correct=lambda d: d.gpt_answer == d.correct_answer)


def dvc_metrics(evaluation: Evaluation) -> dict:
    """``metrics.json`` for DVC: per model the average and the 7 tasks (rounded); a value that
    is not a number (a mode with nothing left to score) is left out, so the file is JSON."""
    return {m: {k: round(v, 2) for k, v in d.items() if v == v}
            for m, d in evaluation.metrics().items()}  # fmt: skip
