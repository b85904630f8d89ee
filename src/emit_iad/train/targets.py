"""SFT targets: the answer letter, or a short rationale built from the question's metadata in
``<think>…</think><answer>…</answer>``. The rationale ends with its conclusion, so the reasoning
and the answer agree (what AnomalyR1's ROAM reward checks)."""

from __future__ import annotations

from emit_iad.mmad import protocol as p


def _readable(x) -> str:
    return str(x).replace("_", " ")


def _has(x) -> bool:
    return isinstance(x, str) and bool(x)


def rationale(record) -> str:
    """One or two sentences that lead to the answer, from what the question is about.

    >>> rationale({"type": "Defect Localization", "defect": "crack", "region": "top left",
    ...            "object": "wood", "query_text": None})
    'The crack differs from the template at the top left.'
    """
    qtype, defect, region = record["type"], record.get("defect"), record.get("region")
    obj = _readable(record.get("object", "object"))
    text_query = _has(record.get("query_text"))
    seen = "The description names" if text_query else "The query shows"
    if qtype == p.ANOMALY_DETECTION:
        if _has(defect):
            return f"{seen} a {_readable(defect)} at the {region}, so there is a defect."
        subject = "The description" if text_query else "The query"
        return f"{subject} matches a normal {obj}, so there is no defect."
    if qtype == p.DEFECT_LOCALIZATION:
        return f"The {_readable(defect)} differs from the template at the {region}."
    if qtype in (p.DEFECT_CLASSIFICATION, p.DEFECT_DESCRIPTION, p.DEFECT_ANALYSIS):
        return f"The defect on the {obj} is a {_readable(defect)}."
    return f"The product is a {obj}."


def target(record, answer_format: str) -> str:
    """What the model should write for a question record."""
    letter = record["answer"]
    if answer_format == "plain":
        return letter
    return f"<think>{rationale(record)} The answer is {letter}.</think><answer>{letter}</answer>"
