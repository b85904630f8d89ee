"""Run one answerer over a benchmark: batched, resumable, with a progress bar.

Every answered batch is appended to ``<work_dir>/<model>.jsonl`` and flushed to disk, so an
interrupted evaluation restarts where it stopped; the final answers are put in benchmark order,
so they equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from emit_iad.mmad import protocol as p
from emit_iad.mmad.batching import batch_order
from emit_iad.mmad.format import entry_rows, read_mmad
from emit_iad.mmad.parsing import parse_answer
from emit_iad.sources.images import ImageReadError, check_readable

ANSWER_FIELDS = ("image", "question", "question_type", "correct_answer", "gpt_answer")


def load_benchmark(mmad_json: str | Path, image_root: str | Path, on_error: str = "fail",
                   workers: int = 4) -> tuple[pd.DataFrame, list[dict]]:  # fmt: skip
    """Questions of an ``mmad.json`` and the problems found; ``on_error="skip"`` leaves bad
    entries out (listed), ``"fail"`` raises at the first (in key order) with the entry named.
    Every image is decoded once, on ``workers`` threads (PIL decodes without the GIL)."""
    if on_error not in ("fail", "skip"):
        raise ValueError("evaluation.on_error must be 'fail' or 'skip'")
    data = read_mmad(mmad_json)
    root = Path(image_root).resolve()
    rows: dict[str, list[dict]] = {}
    shown: dict[str, list[Path]] = {}  # each entry's resolved image files, checked to exist
    errors: dict[str, Exception] = {}
    for key in sorted(data):
        try:
            rows[key], shown[key] = _checked_rows(key, data[key], image_root, root)
        except (ValueError, FileNotFoundError) as exc:
            errors[key] = exc
    files = sorted({f for key in shown for f in shown[key]})
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        unreadable = dict(zip(files, pool.map(_unreadable, files), strict=True))
    for key in rows:
        bad = next((f for f in shown[key] if unreadable[f]), None)
        if bad is not None:
            errors[key] = ValueError(f"entry {key!r}: image {bad} cannot be read "
                                     f"({unreadable[bad]})")  # fmt: skip
    problems = []
    for key in sorted(errors):
        exc = errors[key]
        if on_error == "fail":
            hint = f"(in {mmad_json}; set evaluation.on_error: skip to skip it)"
            raise type(exc)(f"{exc} {hint}") from None
        problems.append({"entry": key, "reason": str(exc)})
    kept = [row for key in sorted(rows) if key not in errors for row in rows[key]]
    return pd.DataFrame(kept), problems


def _checked_rows(key: str, entry: object, image_root: str | Path,
                  root: Path) -> tuple[list[dict], list[Path]]:  # fmt: skip
    """An entry's question rows and the resolved files it shows (its rows share them), each
    checked: known type, answer among the options, images inside the root and present."""
    rows = entry_rows(key, entry, image_root)
    for r in rows:
        if r["type"] not in p.QUESTION_TYPES:
            raise ValueError(f"entry {key!r}: unknown question type {r['type']!r}")
        if r["answer"] not in p.LETTERS[: len(r["options"])]:
            raise ValueError(f"entry {key!r}: answer {r['answer']!r} is not one of the "
                             f"options {list(p.LETTERS[: len(r['options'])])}")  # fmt: skip
    if not rows:
        return rows, []
    first = rows[0]
    paths = [first["query_image"], *first["similar_templates"], *first["random_templates"]]
    return rows, [check_image(key, Path(path), root) for path in paths]


def _unreadable(path: Path) -> str | None:
    try:
        check_readable(path)
    except ImageReadError as exc:  # unidentified, truncated, a decompression bomb
        return exc.reason
    return None


def check_image(key: str, path: Path, root: Path) -> Path:
    """The resolved image, which lies inside the benchmark's root (nothing outside it is read,
    or sent to an endpoint) and exists; else an error naming the entry. (Whether it decodes
    whole is checked by :func:`load_benchmark`, once per file.)"""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"entry {key!r}: image {path} lies outside image_root {root}; "
                         "refused: nothing outside the benchmark's folder is read")  # fmt: skip
    if not resolved.is_file():
        raise FileNotFoundError(f"entry {key!r}: image {path} not found")
    return resolved


def _read_done(path: Path) -> dict[str, dict]:
    done = {}
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that question is asked again
        done[row["id"]] = row
    return done


def run_benchmark(
    questions: pd.DataFrame,
    answerer,
    work_file: str | Path,
    batch_size: int = 16,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[list[dict], dict[str, float]]:
    """Answers in MMAD's format (benchmark order) and speed figures of this run."""
    work_file = Path(work_file)
    work_file.parent.mkdir(parents=True, exist_ok=True)
    done = _read_done(work_file)
    todo = questions[~questions.id.isin(done)]
    todo = todo.iloc[batch_order([r for _, r in todo.iterrows()])]
    chunks = [todo.iloc[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    asked = 0
    with work_file.open("a") as fh:
        for chunk in progress(chunks, len(chunks)) if progress else chunks:
            records = [r for _, r in chunk.iterrows()]
            start = time.perf_counter()
            replies = answerer.answer(records)
            share = (time.perf_counter() - start) / len(records)  # each answer's part of the batch
            for r, reply in zip(records, replies, strict=True):
                row = {
                    "id": r["id"], "image": r["query_key"], "question": r["question"],
                    "question_type": r["type"], "correct_answer": r["answer"],
                    "gpt_answer": parse_answer(reply, list(r["options"])), "raw": reply,
                    "seconds": share,
                }  # fmt: skip
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                done[row["id"]] = row
            fh.flush()
            os.fsync(fh.fileno())
            asked += len(records)
    # speed over every answer, also those kept from an interrupted or earlier run
    elapsed = sum(float(done[i].get("seconds", 0.0)) for i in questions.id)
    answers = [{k: done[i][k] for k in ("id", *ANSWER_FIELDS, "raw")} for i in questions.id]
    speed = {"questions": float(len(questions)), "asked": float(asked),
             "questions_per_s": len(questions) / elapsed if elapsed > 0 else 0.0}  # fmt: skip
    return answers, speed
