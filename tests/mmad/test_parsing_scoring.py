"""Answer parsing (property tests) and MMAD scoring against hand-computed tables."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from emit_iad.mmad import protocol as p
from emit_iad.mmad.parsing import is_well_formed, parse_answer
from emit_iad.mmad.scoring import (
    metrics_of,
    mmad_counted,
    score_answers,
    score_reference,
    unparsed,
)

OPTS = ["Yes.", "No."]
FOUR = ["Scratch.", "Crack.", "Hole.", "Stain."]


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [("B", OPTS, "B"), ("The answer is A.", OPTS, "A"), ("A or B? B", OPTS, "B"),
     ("<think>A looks odd, maybe C</think><answer>B</answer>", FOUR, "B"),
     ("<think>I pick A</think><answer>Crack</answer>", FOUR, "B"),  # tag content, then difflib
     ("crack", FOUR, "B"), ("Yes", OPTS, "A"), ("", OPTS, None), ("a hole", FOUR, "C")],
)  # fmt: skip
def test_parse_answer_by_hand(text, options, expected):
    assert parse_answer(text, options) == expected


@given(
    st.sampled_from(list("ABCDE")), st.text(alphabet=" abcdfghijklmnopqrstuvwxyz.,\n", max_size=40)
)
def test_a_trailing_standalone_letter_wins(letter, prefix):
    assert parse_answer(f"{prefix} {letter}", FOUR) == letter


@given(st.sampled_from(list("ABCD")), st.text(max_size=60))
def test_the_answer_tag_beats_anything_in_the_reasoning(letter, reasoning):
    reasoning = reasoning.replace("<", "").replace(">", "")
    assert parse_answer(f"<think>{reasoning}</think><answer>{letter}</answer>", FOUR) == letter


@given(st.text(max_size=80))
def test_parse_answer_never_fails_and_returns_a_letter_or_none(text):
    got = parse_answer(text, FOUR)
    assert got is None or got in "ABCDE"


@given(st.integers(0, 3))
def test_option_text_alone_maps_to_its_letter(i):
    assert parse_answer(FOUR[i].lower().rstrip("."), FOUR) == "ABCD"[i]


def test_well_formed():
    assert is_well_formed("<think>x y</think>\n<answer>C</answer>")
    assert not is_well_formed("<think>x</think>")
    assert not is_well_formed("<answer>C</answer><think>x</think>")
    assert not is_well_formed("sure <think>x</think><answer>C</answer>")


def _a(image, qtype, correct, answer):
    return {"image": image, "question": "q", "question_type": qtype,
            "correct_answer": correct, "gpt_answer": answer}  # fmt: skip


HAND = [
    # DS1: AD normal 1/2 right, anomalous 2/2 right -> balanced (50 + 100) / 2 = 75
    _a("DS1/o/test/good/0.png", p.ANOMALY_DETECTION, "B", "B"),
    _a("DS1/o/test/good/1.png", p.ANOMALY_DETECTION, "B", "A"),
    _a("DS1/o/test/crack/0.png", p.ANOMALY_DETECTION, "A", "A"),
    _a("DS1/o/test/crack/1.png", p.ANOMALY_DETECTION, "A", "A"),
    # DS1: classification 1/2 = 50; object analysis pools structure 1/1 + details 0/1 = 50
    _a("DS1/o/test/crack/0.png", p.DEFECT_CLASSIFICATION, "C", "C"),
    _a("DS1/o/test/crack/1.png", p.DEFECT_CLASSIFICATION, "C", "D"),
    _a("DS1/o/test/good/0.png", p.OBJECT_STRUCTURE, "A", "A"),
    _a("DS1/o/test/good/0.png", p.OBJECT_DETAILS, "A", None),
    # DS2: AD only anomalous 0/1 -> 0; localization 1/1 = 100
    _a("DS2/o/test/bad/0.png", p.ANOMALY_DETECTION, "A", "B"),
    _a("DS2/o/test/bad/0.png", p.DEFECT_LOCALIZATION, "D", "D"),
]


def test_score_against_a_hand_computed_table():
    table = score_answers(pd.DataFrame(HAND))
    ds1, ds2, avg = table.loc["DS1"], table.loc["DS2"], table.loc["Average"]
    assert ds1[p.ANOMALY_DETECTION] == 75.0
    assert ds1[p.DEFECT_CLASSIFICATION] == 50.0 and ds1[p.OBJECT_ANALYSIS] == 50.0
    assert ds1["Average"] == pytest.approx((75 + 50 + 50) / 3)
    assert ds1["Overkill"] == 50.0 and ds1["Miss"] == 0.0
    assert ds2[p.ANOMALY_DETECTION] == 0.0 and ds2[p.DEFECT_LOCALIZATION] == 100.0
    assert ds2["Average"] == 50.0 and ds2["Miss"] == 100.0 and np.isnan(ds2["Overkill"])
    assert avg["Average"] == pytest.approx(((75 + 50 + 50) / 3 + 50) / 2)
    assert avg[p.ANOMALY_DETECTION] == 37.5
    assert metrics_of(table)["anomaly_detection"] == 37.5


answer_rows = st.lists(
    st.builds(
        _a,
        st.builds(lambda d, g, i: f"{d}/obj/test/{g}/{i}.png", st.sampled_from(["A", "B"]),
                  st.sampled_from(["good", "crack"]), st.integers(0, 3)),
        st.sampled_from(p.QUESTION_TYPES),
        st.sampled_from(list("ABCD")),
        st.sampled_from([*"ABCD", None]),
    ),
    min_size=1, max_size=40,
)  # fmt: skip


@given(answer_rows)
def test_vectorised_scorer_equals_the_loop(rows):
    fast = score_answers(pd.DataFrame(rows))
    slow = score_reference(rows)
    for ds, row in slow.items():
        for task, value in row.items():
            assert fast.loc[ds, task] == pytest.approx(value), (ds, task)
    for col in [*p.TASKS, "Average"]:
        vals = fast.drop(index="Average")[col].dropna()
        if len(vals):  # the final row is the mean over the datasets that have the column
            assert fast.loc["Average", col] == pytest.approx(vals.mean())


def test_mmad_mode_drops_unreadable_answers_and_the_one_after_each():
    """MMAD's summary.py: HAND's unreadable answer (row 7) is dropped, and so is row 8 (DS2's
    only AD question, wrong): DS1 object analysis becomes 1/1, DS2 has no AD column."""
    table = score_answers(pd.DataFrame(HAND), mode="mmad")
    ds1, ds2 = table.loc["DS1"], table.loc["DS2"]
    assert ds1[p.OBJECT_ANALYSIS] == 100.0 and ds1["Average"] == pytest.approx(75.0)
    assert np.isnan(ds2[p.ANOMALY_DETECTION]) and ds2["Average"] == 100.0
    assert table.loc["Average", "Average"] == pytest.approx(87.5)
    strict = score_answers(pd.DataFrame(HAND), mode="strict")
    assert strict.loc["DS1", p.OBJECT_ANALYSIS] == 50.0  # the unreadable answer is wrong
    assert unparsed(pd.DataFrame(HAND)) == 1
    with pytest.raises(ValueError, match=r"evaluation\.scoring"):
        score_answers(pd.DataFrame(HAND), mode="lenient")


def summary_py_loop(letters):
    """The quirk itself: remove from the list being iterated, as MMAD's summary.py does."""
    items = [{"i": i, "letter": x} for i, x in enumerate(letters)]
    counted = []
    for item in items:
        if item["letter"] not in ("A", "B", "C", "D", "E"):
            items.remove(item)
            continue
        counted.append(item["i"])
    return counted


@given(st.lists(st.sampled_from(["A", "B", "E", None, "F", "", "no"]), max_size=30))
def test_mmad_counted_equals_summary_py_s_loop(letters):
    kept = mmad_counted(letters)
    assert [i for i, k in enumerate(kept) if k] == summary_py_loop(letters)


def test_unknown_question_type_is_named():
    with pytest.raises(ValueError, match="Vibes"):
        score_answers(pd.DataFrame([_a("D/o/good/0.png", "Vibes", "A", "A")]))
