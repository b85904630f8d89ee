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


SHORT_OPTION_WORDS = 4  # options up to this many words are walked through (names, regions)


def walk(record) -> str | None:
    """The options read one by one, each judged, up to the right one:
    ``A. Wood. no. B. Screw. yes.`` Each option is copied as the prompt writes it, then judged
    against what the image shows; the answer is then the last letter written. A 2-layer model
    cannot look up which letter stands before a name it recognised (measured: it names the
    object and picks one fixed letter); this turns the lookup into steps it can take. None when
    an option is longer than :data:`SHORT_OPTION_WORDS` words (descriptions: too long to walk).

    >>> walk({"options": ["Wood.", "Screw.", "Tablet."], "answer": "B"})
    'A. Wood. no. B. Screw. yes.'
    """
    options = [str(o) for o in record["options"]]
    if any(len(o.split()) > SHORT_OPTION_WORDS for o in options):
        return None
    steps = []
    for letter, option in zip(p.LETTERS, options, strict=False):
        right = letter == record["answer"]
        steps.append(f"{letter}. {option} {'yes' if right else 'no'}.")
        if right:
            break
    return " ".join(steps)


def target(record, answer_format: str, style: str = "short") -> str:
    """What the model should write for a question record. ``style`` ``options``: the think
    part walks through short options (:func:`walk`) after the rationale, except for Anomaly
    Detection's yes/no."""
    letter = record["answer"]
    if answer_format == "plain":
        return letter
    why = rationale(record)
    if style == "options" and record["type"] != p.ANOMALY_DETECTION:
        steps = walk(record)
        if steps:  # the answer as the options write it, then the walk matches it token for token
            right = record["options"][p.LETTERS.index(letter)]
            why = f"{why} It is {right} {steps}"
    return f"<think>{why} The answer is {letter}.</think><answer>{letter}</answer>"
