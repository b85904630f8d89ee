"""Answer parsing: the ``<answer>`` tag first when present, else MMAD's rule — the last
standalone letter A–E, and failing that the option whose text is closest (difflib)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from emit_iad.mmad.protocol import LETTERS

_LETTER = re.compile(r"\b([A-E])\b")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_FORMAT = re.compile(r"^\s*<think>.+?</think>\s*<answer>.+?</answer>\s*$", re.DOTALL)


def answer_tag(text: str) -> str | None:
    """Content of the last ``<answer>…</answer>``, or None.

    >>> answer_tag("<think>x</think><answer> B </answer>")
    ' B '
    """
    found = _ANSWER_TAG.findall(text or "")
    return found[-1] if found else None


def think_text(text: str) -> str | None:
    found = _THINK.findall(text or "")
    return found[-1] if found else None


def is_well_formed(text: str) -> bool:
    """``<think>…</think><answer>…</answer>`` and nothing else around it.

    >>> is_well_formed("<think>a</think><answer>B</answer>"), is_well_formed("B")
    (True, False)
    """
    return bool(_FORMAT.match(text or ""))


def letter_in(text: str) -> str | None:
    """The last standalone letter A–E (MMAD's rule).

    >>> letter_in("Answer: B. Not A or C? C")
    'C'
    """
    found = _LETTER.findall(text or "")
    return found[-1] if found else None


def parse_answer(text: str, options: Sequence[str]) -> str | None:
    """The letter a model answered, or None if nothing can be read."""
    text = text or ""
    tagged = answer_tag(text)
    if tagged is not None:
        text = tagged
    letter = letter_in(text)
    if letter is not None:
        return letter
    cleaned = text.strip()
    if not cleaned or not options:
        return None
    close = difflib.get_close_matches(cleaned, list(options), n=1, cutoff=0.0)
    return LETTERS[list(options).index(close[0])] if close else None
