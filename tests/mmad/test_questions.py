"""Pure parts of question building: option text, distinct options, balanced letters."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emit_iad.mmad import protocol as p
from emit_iad.mmad.questions import (
    Draft,
    balanced_positions,
    finalize,
    option_text,
    structure_and_details,
    unique_options,
    validate_questions,
)
from emit_iad.mmad.splits import split_counts

words = st.text(alphabet="abcdefghij _.", min_size=0, max_size=12)


@given(words)
def test_option_text_is_idempotent(text):
    once = option_text(text)
    assert option_text(once) == once
    assert once == "" or (once.endswith(".") and not once.endswith(".."))


@given(words, st.lists(words, max_size=12), st.integers(2, 5))
def test_unique_options_are_distinct_nonempty_and_start_with_the_answer(answer, cands, n):
    opts = unique_options(answer, cands, n)
    if not option_text(answer):
        return
    distinct = {option_text(c).lower() for c in cands if option_text(c)} - {
        option_text(answer).lower()
    }
    if len(distinct) < n - 1:
        assert opts is None
        return
    assert len(opts) == n and opts[0] == option_text(answer)
    assert all(o.strip() for o in opts)
    assert len({o.lower() for o in opts}) == n


@given(st.integers(0, 200), st.sampled_from([2, 4, 5]), st.integers(0, 2**32 - 1))
def test_balanced_positions_differ_by_at_most_one(count, n, seed):
    pos = balanced_positions(count, n, np.random.default_rng(seed))
    assert len(pos) == count
    counts = np.bincount(pos, minlength=n)
    assert counts.max() - counts.min() <= 1


def _draft(i, qtype, answer, distractors, n):
    row = {"id": f"img{i:03d}::{qtype}", "split": "train", "dataset": "d", "object": "o",
           "type": qtype, "question": p.QUESTIONS[qtype], "query_text": None}  # fmt: skip
    return Draft(row, answer, distractors, n)


@given(st.integers(1, 60), st.integers(0, 1000))
def test_finalize_keeps_invariants_and_balances_letters(n_questions, seed):
    drafts = [_draft(i, p.DEFECT_LOCALIZATION, "top left", ["top", "left", "center", "right"], 4)
              for i in range(n_questions)]  # fmt: skip
    df, skipped = finalize(drafts, seed)
    validate_questions(df)
    assert not skipped and len(df) == n_questions
    for r in df.itertuples():
        assert r.options[p.LETTERS.index(r.answer)] == "Top left."
    counts = df.answer.value_counts().reindex(list("ABCD"), fill_value=0)
    assert counts.max() - counts.min() <= 1


def test_finalize_reports_questions_short_of_options():
    df, skipped = finalize([_draft(0, p.DEFECT_CLASSIFICATION, "crack", ["crack", "Crack."], 4)], 0)
    assert df.empty
    assert skipped[0]["reason"] == "fewer than 4 distinct options"


def test_validate_questions_names_the_broken_ones():
    df = pd.DataFrame([
        {"id": "a", "options": ["Yes.", "No."], "answer": "C", "type": p.ANOMALY_DETECTION},
        {"id": "b", "options": ["Yes.", "yes."], "answer": "A", "type": p.ANOMALY_DETECTION},
        {"id": "c", "options": ["X.", "Y."], "answer": "A", "type": "Vibes"},
    ])  # fmt: skip
    with pytest.raises(ValueError) as info:
        validate_questions(df)
    text = str(info.value)
    assert "a: answer 'C'" in text and "b: empty or duplicate" in text and "c: unknown type" in text


def test_structure_and_details_split():
    assert structure_and_details("First sentence here. Second one. Third.") == (
        "First sentence here", "Second one")  # fmt: skip
    assert structure_and_details("A normal pill is round") == ("round", None)


@given(st.integers(0, 500), st.floats(0, 1), st.floats(0, 1))
def test_split_counts_sum_to_n(n, a, b):
    a, b = sorted((a, b))
    counts = split_counts(n, {"train": a, "val": b - a, "test": 1 - b})
    assert sum(counts.values()) == n and min(counts.values()) >= 0
