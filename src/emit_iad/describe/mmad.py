"""Import MMAD's ``domain_knowledge.json`` (per dataset and object: ``good`` = normal
characteristics, one entry per defect type) as normal and defect descriptions."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

MMAD_MODEL = "mmad-domain-knowledge"
# Image-index dataset names → the keys of domain_knowledge.json.
DEFAULT_ALIASES = {"DS-MVTec": "MVTec", "MVTec-AD": "MVTec"}
_EFFECT = re.compile(r"compromis|affect|function|integrity|safety|usab|quality|reliab", re.I)


class MMADKnowledgeError(ValueError):
    pass


def load_domain_knowledge(path) -> dict[str, dict[str, dict[str, str]]]:
    """MMAD's ``domain_knowledge.json``; a list of such files is merged, the first one first
    (EMIT's ``domain_knowledge_MPDD_Real-IAD.json`` has the same shape)."""
    if isinstance(path, list | tuple):
        merged: dict[str, dict[str, dict[str, str]]] = {}
        for one in reversed(path):
            for dataset, objects in load_domain_knowledge(one).items():
                for obj, entries in objects.items():
                    merged.setdefault(dataset, {}).setdefault(obj, {}).update(entries)
        return merged
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MMADKnowledgeError(
            f"{path}: not found; set `descriptions.mmad.domain_knowledge` to MMAD's "
            "domain_knowledge.json"
        ) from None
    except json.JSONDecodeError as exc:
        raise MMADKnowledgeError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MMADKnowledgeError(f"{path}: expected {{dataset: {{object: {{defect: text}}}}}}")
    return data


def split_entry(entry: str) -> tuple[str, str, str]:
    """``(title, traits, effect)`` of one entry ``" <Title>\\n Description: ..."``.

    >>> split_entry(" <Crack>\\n Description: A thin line. It may compromise the part.")
    ('Crack', 'A thin line. It may compromise the part.', 'It may compromise the part.')
    """
    title_match = re.match(r"\s*<([^>]*)>", entry)
    title = title_match.group(1).strip() if title_match else ""
    body = entry[title_match.end() :] if title_match else entry
    body = re.sub(r"^\s*Description:\s*", "", body).strip()
    sentences = re.split(r"(?<=[.!?])\s+", body)
    effect = " ".join(s for s in sentences if _EFFECT.search(s))
    return title, body, effect


def lookup(
    knowledge: dict, dataset: str, obj: str, key: str, aliases: dict[str, str]
) -> tuple[str, str, str] | None:
    per_dataset = knowledge.get(aliases.get(dataset, dataset)) or knowledge.get(dataset) or {}
    entry = (per_dataset.get(obj) or {}).get(key)
    return split_entry(entry) if isinstance(entry, str) and entry.strip() else None


def entry_hash(dataset: str, obj: str, key: str, text: str) -> str:
    return hashlib.sha256(json.dumps([MMAD_MODEL, dataset, obj, key, text]).encode()).hexdigest()
