"""Domain knowledge per object, in MMAD's ``domain_knowledge.json`` shape, from descriptions.

MMAD's file holds, per dataset and object, ``good`` (the normal characteristics) and one entry
per defect type, each written ``" <Title>\\n Description: text"``. EMIT's prompt shows them all,
one after the other (``"\\n".join``). The qa stage builds the same entries from the descriptions
stage's texts, attaches each object's text to its questions (column ``knowledge``) and writes
``domain_knowledge.json`` beside the test benchmark's ``mmad.json``.
"""

from __future__ import annotations

import pandas as pd

NORMAL = "good"


def entry(title: str, text: str) -> str:
    """One entry as MMAD writes it.

    >>> entry("Crack Defect", "A thin dark line. ")
    ' <Crack Defect>\\n Description: A thin dark line.'
    """
    return f" <{title}>\n Description: {str(text).strip()}"


def defect_title(defect: str) -> str:
    """The title of a defect's entry.

    >>> defect_title("broken_large")
    'Broken Large Defect'
    """
    return " ".join(w.capitalize() for w in str(defect).replace("_", " ").split()) + " Defect"


def knowledge_entries(descriptions: pd.DataFrame) -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, object) -> {``good`` | defect: entry}, the normal characteristics first."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    d = descriptions
    for r in d[d.kind == "normal"].sort_values(["dataset", "object"]).itertuples():
        out.setdefault((r.dataset, r.object), {})[NORMAL] = entry("Normal Characteristics", r.text)
    for r in d[d.kind == "defect"].sort_values(["dataset", "object", "defect"]).itertuples():
        out.setdefault((r.dataset, r.object), {})[r.defect] = entry(defect_title(r.defect), r.text)
    return {k: dict(sorted(v.items(), key=lambda kv: kv[0] != NORMAL)) for k, v in out.items()}


def knowledge_text(entries: dict[str, str]) -> str:
    """The text a prompt shows: every entry, one after the other (EMIT's ``"\\n".join``)."""
    return "\n".join(v.strip() for v in entries.values())


def as_domain_knowledge_json(
    entries: dict[tuple[str, str], dict[str, str]], pairs
) -> dict[str, dict[str, dict[str, str]]]:
    """MMAD's file shape for the (dataset, object) ``pairs`` a benchmark asks about."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for dataset, obj in sorted(set(pairs)):
        if (dataset, obj) in entries:
            out.setdefault(dataset, {})[obj] = entries[(dataset, obj)]
    return out
