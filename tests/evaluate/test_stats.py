"""The ablation's intervals: MMAD's task average and the paired bootstrap of a difference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emit_iad.evaluate.stats import bootstrap_difference, task_average

TASKS = ["AD"] * 4 + ["DL"] * 4


def test_task_average_by_hand():
    # AD 3/4 = 75 %, DL 1/4 = 25 %: average 50 %, not the 4/8 pooled (the same here) ...
    assert task_average(np.array([[1, 1, 1, 0, 1, 0, 0, 0]]), TASKS).tolist() == [50.0]
    # ... and with unequal task sizes the two differ: AD 2/2, DL 0/6 -> 50 %, pooled 25 %
    assert task_average(np.array([[1, 1, 0, 0, 0, 0, 0, 0]]),
                        ["AD", "AD"] + ["DL"] * 6).tolist() == [50.0]  # fmt: skip


def test_identical_models_give_a_zero_interval():
    runs = np.random.default_rng(0).integers(0, 2, size=(3, 8))
    interval = bootstrap_difference(runs, runs, TASKS, n_boot=300)
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)
    assert not interval.excludes_zero()


def test_a_model_right_where_the_other_is_wrong_is_better_by_the_hand_computed_gap():
    a = np.tile([[1, 0, 1, 0, 1, 0, 1, 0]], (3, 10))  # 50 % on both tasks
    b = np.tile([[1, 1, 1, 0, 1, 1, 1, 0]], (3, 10))  # 75 % on both tasks: +25 points
    interval = bootstrap_difference(a, b, TASKS * 10, n_boot=500)
    assert interval.estimate == pytest.approx(25.0)
    assert 0 < interval.low <= 25.0 <= interval.high  # B is never worse on any question
    assert interval.excludes_zero() and str(interval).startswith("+25.0 [")


def test_seeds_that_disagree_widen_the_interval():
    """Same questions, same mean gap; when the seeds of B scatter, the interval is wider."""
    rng = np.random.default_rng(1)
    tasks = ["AD"] * 200 + ["DL"] * 200
    a = (rng.random((3, 400)) < 0.5).astype(float)
    steady = (rng.random((3, 400)) < 0.6).astype(float)
    scattered = np.stack([(rng.random(400) < p).astype(float) for p in (0.45, 0.6, 0.75)])
    narrow = bootstrap_difference(a, steady, tasks, n_boot=600)
    wide = bootstrap_difference(a, scattered, tasks, n_boot=600)
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=8, max_size=8),
       st.lists(st.integers(0, 1), min_size=8, max_size=8))  # fmt: skip
def test_the_estimate_lies_in_its_interval_and_flips_sign_with_the_order(x, y):
    a, b = np.array([x]), np.array([y])
    forward = bootstrap_difference(a, b, TASKS, n_boot=200, seed=3)
    backward = bootstrap_difference(b, a, TASKS, n_boot=200, seed=3)
    assert forward.estimate == pytest.approx(-backward.estimate)
    assert forward.low == pytest.approx(-backward.high) and forward.high == pytest.approx(-backward.low)


def test_correct_matrix_orders_runs_by_seed_and_questions_by_id():
    import pandas as pd

    from emit_iad.evaluate.stats import correct_matrix

    marks = pd.DataFrame({"seed": [1, 1, 0, 0], "id": ["q2", "q1", "q1", "q2"],
                          "correct": [1, 0, 1, 1]})  # fmt: skip
    assert correct_matrix(marks, ["q1", "q2", "q3"]).tolist() == [[1, 1, 0], [0, 1, 0]]


def test_step_intervals_per_group_with_the_target():
    from emit_iad.evaluate.stats import step_intervals

    tasks = ["AD"] * 40 + ["DL"] * 40
    worse = np.tile([1, 0], 40)[None].astype(float)  # 50 %
    better = np.ones((2, 80))  # 100 % on both seeds
    seen = np.arange(80) < 60
    rows = step_intervals({"SFT": worse, "GRPO": better}, tasks, [("SFT", "GRPO")],
                          {"seen": seen, "held-out": ~seen, "none": np.zeros(80, bool)},
                          n_boot=300)  # fmt: skip
    assert [r["questions"] for r in rows] == ["seen", "held-out"]  # an empty group is left out
    assert rows[0]["difference"] == pytest.approx(50.0) and rows[0]["met"]
    assert rows[0]["runs"] == 2 and rows[0]["low"] > 30
