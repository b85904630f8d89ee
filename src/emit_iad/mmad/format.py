"""MMAD's ``mmad.json``: write question tables as it, and read it (ours or MMAD's own) back.

``mmad.json`` is a dict keyed by the query image's path relative to the benchmark root
(``<dataset>/<object>/...``); each value has ``conversation`` (``Question``, ``Answer`` letter,
``Options`` {letter: text}, ``type``), ``mask_path`` (relative to ``<dataset>/<object>/``, empty
for normal images), ``similar_templates`` and ``random_templates`` (relative to the root).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from emit_iad.mmad import protocol as p


class MMADFormatError(ValueError):
    pass


def image_key(dataset: str, obj: str, source_split: str, label: str, path: str) -> str:
    """Benchmark-relative key of an indexed image: ``<dataset>/<object>/<split>/<label>/<file>``.

    >>> image_key("VisA", "candle", "test", "bad", "/data/VisA/candle/test/bad/0001.JPG")
    'VisA/candle/test/bad/0001.JPG'
    """
    return f"{dataset}/{obj}/{source_split}/{label}/{Path(path).name}"


def mask_key(obj_label: str, path: str) -> str:
    """Mask path relative to ``<dataset>/<object>/`` as MMAD writes it."""
    return f"ground_truth/{obj_label}/{Path(path).stem.removesuffix('_mask')}_mask.png"


def to_mmad(questions: pd.DataFrame, template_keys: dict[str, str]) -> dict:
    """Image-query questions → ``mmad.json`` content (text-as-query rows are not MMAD's)."""
    out: dict[str, dict] = {}
    rows = questions[questions.query_text.isna()]
    for key, group in rows.groupby("query_key", sort=True):
        first = group.iloc[0]
        mask = ""
        if isinstance(first.defect, str) and isinstance(first.mask_path, str):
            mask = mask_key(first.defect, first.mask_path.split(";")[0])
        out[key] = {
            "image_path": key,
            "conversation": [
                {
                    "Question": r.question,
                    "Answer": r.answer,
                    "Options": {p.LETTERS[i]: o for i, o in enumerate(r.options)},
                    "type": r.type,
                }
                for r in group.sort_values("id").itertuples()
            ],
            "mask_path": mask,
            "similar_templates": [template_keys[t] for t in first.similar_templates],
            "random_templates": [template_keys[t] for t in first.random_templates],
        }
    return out


def benchmark_files(
    questions: pd.DataFrame, mmad: dict, template_keys: dict[str, str]
) -> dict[str, list[str]]:
    """Every file an ``mmad.json`` names, as {path relative to the root: source paths}.

    A mask with several sources (MVTec-LOCO) is to be united into one file.
    """
    source = {key: path for path, key in template_keys.items()}
    files: dict[str, list[str]] = {}
    for key, entry in mmad.items():
        files[key] = [source[key]]
        for t in entry["similar_templates"] + entry["random_templates"]:
            files[t] = [source[t]]
    for r in questions.drop_duplicates("query_key").itertuples():
        if r.query_key in mmad and isinstance(r.mask_path, str) and isinstance(r.defect, str):
            rel = f"{r.dataset}/{r.object}/{mmad[r.query_key]['mask_path']}"
            files[rel] = r.mask_path.split(";")
    return files


def benchmark_id(mmad_json: str | Path) -> str:
    """A benchmark's identity: its folder's name and a digest of its questions, so that scores
    on another benchmark (or another version of this one) are never compared."""
    path = Path(mmad_json)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return f"{path.parent.name}-{digest}"


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are unique (``json`` silently keeps the last of duplicates)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def read_mmad(path: str | Path) -> dict:
    """An ``mmad.json``, refused with the key named when a key appears twice (an entry's
    questions would otherwise be replaced by the last entry's, without a word)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        raise MMADFormatError(
            f"{path}: the key {exc.args[0]!r} appears twice in one object (JSON keeps only the "
            "last, so the first one's content would be lost); merge the two into one"
        ) from None
    except FileNotFoundError:
        raise MMADFormatError(f"{path}: not found; set evaluation.mmad_json") from None
    except json.JSONDecodeError as exc:
        raise MMADFormatError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise MMADFormatError(f"{path}: expected an object keyed by image path")
    return data


def from_mmad(data: dict, image_root: str | Path = "") -> pd.DataFrame:
    """One row per question of an ``mmad.json`` (ours or MMAD's), paths joined to the root.

    Raises :class:`MMADFormatError` naming the entry for anything malformed.
    """
    return pd.DataFrame([row for key in sorted(data)
                         for row in entry_rows(key, data[key], image_root)])  # fmt: skip


def entry_rows(key: str, entry: object, image_root: str | Path = "") -> list[dict]:
    """The question rows of one entry of an ``mmad.json``; raises :class:`MMADFormatError`."""
    root = Path(image_root)
    conv = entry.get("conversation") if isinstance(entry, dict) else None
    if not isinstance(conv, list):
        raise MMADFormatError(f"entry {key!r}: no `conversation` list")
    parts = key.split("/")
    dataset, obj = (parts[0], parts[1]) if len(parts) > 2 else ("", "")
    seen: dict[str, int] = {}
    mask = entry.get("mask_path") or None
    similar = [str(root / t) for t in entry.get("similar_templates") or []]
    random = [str(root / t) for t in entry.get("random_templates") or []]
    rows = []
    for i, q in enumerate(conv):
        try:
            options = q["Options"]
            letters = sorted(options)
            qtype, answer, question = q["type"], q["Answer"], q["Question"]
        except (KeyError, TypeError, AttributeError) as exc:
            raise MMADFormatError(f"entry {key!r}, question {i}: missing {exc}") from None
        if letters != list(p.LETTERS[: len(letters)]):
            raise MMADFormatError(
                f"entry {key!r}, question {i}: options {letters} are not A, B, ... (max 5)"
            )
        n = seen.get(qtype, 0)
        seen[qtype] = n + 1
        rows.append({
            "id": f"{key}::{qtype}" + (f"#{n}" if n else ""),
            "split": "test", "dataset": dataset, "object": obj,
            "defect": None, "region": None,
            "query_image": str(root / key), "query_key": key, "query_text": None,
            "mask_path": str(root / dataset / obj / mask) if mask else None,
            "similar_templates": list(similar), "random_templates": list(random),
            "question": question, "options": [options[x] for x in letters],
            "answer": answer, "type": qtype,
        })  # fmt: skip
    return rows
