"""SFT targets by hand: the short rationale, and the option walk of the offline default."""

from emit_iad.train.targets import target, walk

OC = {"type": "Object Classification", "object": "screw", "defect": None, "region": None,
      "query_text": None, "options": ["Wood.", "Screw.", "Tablet.", "Washer."], "answer": "B"}  # fmt: skip
AD = {"type": "Anomaly Detection", "object": "wood", "defect": "crack", "region": "top left",
      "query_text": None, "options": ["No.", "Yes."], "answer": "B"}  # fmt: skip


def test_the_option_walk_by_hand():
    assert target(OC, "think", "options") == (
        "<think>The product is a screw. It is Screw. A. Wood. no. B. Screw. yes. "
        "The answer is B.</think><answer>B</answer>"
    )
    # the short rationale, as EMIT's targets (conf/gpu)
    assert target(OC, "think") == (
        "<think>The product is a screw. The answer is B.</think><answer>B</answer>"
    )
    assert target(OC, "plain", "options") == "B"


def test_yes_no_and_long_options_are_not_walked():
    assert target(AD, "think", "options") == target(AD, "think") == (
        "<think>The query shows a crack at the top left, so there is a defect. The answer is B."
        "</think><answer>B</answer>"
    )
    long = {**OC, "type": "Object Details",
            "options": ["A central hole and a key notch.", "Brown grain lines.", "x.", "y."]}  # fmt: skip
    assert walk(long) is None
    assert "A. " not in target(long, "think", "options")
    # the walk stops at the right option
    assert walk({**OC, "answer": "A"}) == "A. Wood. yes."
