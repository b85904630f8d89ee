"""The asking order of a benchmark: alike questions batched together, answers reported in the
benchmark's order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from emit_iad.mmad.batching import batch_order


def q(type_, question, options=("a", "b")):
    return {"type": type_, "question": question, "options": list(options)}


def test_by_type_then_text_length_then_as_given():
    records = [
        q("Defect Localization", "where?", ("left", "right")),  # 6 + 9 = 15
        q("Anomaly Detection", "any defect?", ("yes", "no")),  # 11 + 5 = 16
        q("Defect Localization", "where", ("l", "r")),  # 5 + 2 = 7
        q("Anomaly Detection", "defect?", ("yes", "no")),  # 7 + 5 = 12
        q("Anomaly Detection", "defect!", ("yes", "no")),  # 12 again: kept after position 3
    ]
    assert batch_order(records) == [3, 4, 1, 2, 0]


records = st.lists(st.fixed_dictionaries({
    "type": st.sampled_from(["Anomaly Detection", "Defect Classification", "Object Details"]),
    "question": st.text(max_size=12),
    "options": st.lists(st.text(max_size=5), min_size=2, max_size=4),
}), max_size=40)  # fmt: skip


@given(records)
def test_a_permutation_with_each_type_contiguous(rs):
    order = batch_order(rs)
    assert sorted(order) == list(range(len(rs)))
    types = [rs[i]["type"] for i in order]
    runs = [t for j, t in enumerate(types) if j == 0 or t != types[j - 1]]
    assert len(runs) == len(set(types))  # each type one block
