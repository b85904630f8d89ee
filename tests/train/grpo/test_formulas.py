"""GRPO formulas against hand-computed values: rewards, advantages, reweighting, loss, KL."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from emit_iad.train.grpo.advantages import (
    difficulty_weights,
    emit_advantages,
    group_advantages,
    group_advantages_reference,
)
from emit_iad.train.grpo.config import GRPOConfig
from emit_iad.train.grpo.loss import (
    LossBatch,
    LossSettings,
    UpdateSize,
    k3_kl,
    policy_loss,
)
from emit_iad.train.grpo.resampling import FillStats
from emit_iad.train.grpo.rewards import (
    REWARDS,
    build_rewards,
    cosine_scaled,
    repetition_penalty,
    roam,
    score,
    think_conclusion,
)
from emit_iad.train.grpo.rollout import selective_logp
from emit_iad.train.grpo.trainer import total_steps

OPTS = [["Yes.", "No."]]


def test_accuracy_reward_cases():
    acc = REWARDS["accuracy"]()
    completions = ["<think>x</think><answer>A</answer>", "<answer>B</answer>",
                   "<answer>C</answer>", "A", "<answer>maybe</answer>"]  # fmt: skip
    got = acc(completions, answer=["A"] * 5, options=OPTS * 5)
    # C is not one of two options; no tag; no letter in the tag -> -1
    assert got == [1.0, 0.0, -1.0, -1.0, -1.0]


def test_format_reward():
    fmt = REWARDS["format"]()
    assert fmt(
        [
            "<think>a</think><answer>B</answer>",
            "<answer>B</answer>",
            "x <think>a</think><answer>B</answer>",
        ]
    ) == [1.0, 0.0, 0.0]


def test_cosine_by_hand():
    # halfway: cos(pi/2) = 0 -> the middle of each range
    assert cosine_scaled(50, True, 100) == pytest.approx(0.75)
    assert cosine_scaled(50, False, 100) == pytest.approx(-0.75)
    assert cosine_scaled(500, True, 100) == pytest.approx(0.5)  # capped at max_len
    r = REWARDS["cosine"](max_len=10)
    assert r(["<answer>A</answer>"], answer=["A"], options=OPTS, completion_tokens=[10])[0] \
        == pytest.approx(0.5 + 0.25 * (1 + math.cos(math.pi * 1.0)))  # fmt: skip
    # correct as the accuracy reward says: a bare letter without <answer> is not correct,
    # and the length is in tokens (5 of 10: halfway)
    got = r(["A", "<answer>A</answer>"], answer=["A", "A"], options=OPTS * 2,
            completion_tokens=[5, 5])  # fmt: skip
    assert got == pytest.approx([-0.75, 0.75])


def test_repetition_by_hand():
    assert repetition_penalty("x y z w x y z w", 4) == pytest.approx(-(1 - 4 / 5))
    assert repetition_penalty("<think>a b</think>", 4) == 0.0


def test_roam_on_completions():
    r = REWARDS["roam"]()
    completions = [
        "<think>The query shows a crack. The answer is A.</think><answer>A</answer>",  # 1.0
        "<think>no idea</think><answer>A</answer>",  # no conclusion, right: 0.8
        "<think>no idea</think><answer>B</answer>",  # no conclusion, wrong: 0.05
        "<think>The answer is B.</think><answer>B</answer>",  # both wrong, consistent: 0.1
        "<think>The answer is A.</think><answer>B</answer>",  # inconsistent: 0
    ]
    assert r(completions, answer=["A"] * 5, options=OPTS * 5) == [1.0, 0.8, 0.05, 0.1, 0.0]
    assert think_conclusion("<think>A normal screw. The answer is (B).</think>") == "B"


@given(
    st.sampled_from(list("AB")),
    st.sampled_from([None, "A", "B"]),
    st.sampled_from([None, "A", "B"]),
)
def test_roam_is_one_of_its_five_values(truth, think, answer):
    assert roam(think, answer, truth) in {1.0, 0.8, 0.1, 0.05, 0.0}


def test_weighted_score_and_unknown_rewards():
    rewards = build_rewards({"accuracy": 3, "format": 1, "roam": 0})
    assert [n for n, _, _ in rewards] == ["accuracy", "format"]
    total, parts = score(
        ["<think>t</think><answer>A</answer>", "B"],
        {"answer": ["A", "A"], "options": OPTS * 2},
        rewards,
    )
    assert total == [4.0, -3.0] and parts["format"] == [1.0, 0.0]
    with pytest.raises(ValueError, match=r"unknown reward function.*known"):
        build_rewards({"accuracy": 1, "vibes": 1})


def test_advantages_by_hand():
    # group [1, 0, 0, 0]: mean 0.25, unbiased std 0.5 -> (0.75 / 0.5001, -0.25 / 0.5001)
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert adv[0, 0].item() == pytest.approx(0.75 / 0.5001)
    assert adv[0, 1].item() == pytest.approx(-0.25 / 0.5001)
    same = group_advantages(torch.tensor([[2.0, 2.0, 2.0]]))
    assert torch.equal(same, torch.zeros(1, 3))  # all equal rewards: no signal


@given(
    st.lists(st.lists(st.floats(-3, 3), min_size=2, max_size=8), min_size=1, max_size=4).filter(
        lambda gs: len({len(g) for g in gs}) == 1
    )
)
def test_vectorised_advantages_equal_the_loop(groups):
    fast = group_advantages(torch.tensor(groups, dtype=torch.float64))
    slow = torch.tensor(group_advantages_reference(groups), dtype=torch.float64)
    assert torch.allclose(fast, slow, atol=1e-6)


def test_reweighting_by_hand():
    correct = torch.tensor([[True, False, False, False, False, False, False, False],
                            [True, True, True, True, True, True, True, False],
                            [False] * 8])  # fmt: skip
    assert difficulty_weights(correct).tolist() == [1 + 7 / 8, 1 + 1 / 8, 1.0]
    rewards = correct.float()
    plain = emit_advantages(rewards, correct, reweight=False)
    weighted = emit_advantages(rewards, correct, reweight=True)
    assert torch.allclose(weighted[0], plain[0] * 1.875) and torch.allclose(
        weighted[1], plain[1] * 1.125
    )
    assert torch.equal(weighted[2], torch.zeros(8))


def grpo_loss(logp, old, adv, mask, ref_logp=None, beta=0.0, eps_low=0.2, eps_high=None,
              aggregation="sequence", normalizer=None):  # fmt: skip
    """The two losses these tests were written for: ``grpo`` (mean per sequence) and ``dapo``
    (sum of tokens); ``normalizer``: the update's sequences or tokens."""
    name = "grpo" if aggregation == "sequence" else "dapo"
    size = None
    if normalizer is not None:
        size = UpdateSize(sequences=normalizer, tokens=normalizer)
    return policy_loss(name, LossBatch(logp, old, adv, mask, ref_logp),
                       LossSettings(beta, eps_low, eps_high), size)  # fmt: skip


def test_loss_at_ratio_one_is_minus_the_mean_advantage():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.1, 0.2, 0.3]]))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([2.0, -1.0])
    loss, m = grpo_loss(logp, logp.detach(), adv, mask)
    assert loss.item() == pytest.approx(-(2.0 + -1.0) / 2)
    assert float(m["clip_fraction"]) == 0.0 and float(m["ratio"]) == pytest.approx(1.0)
    tok, _ = grpo_loss(logp, logp.detach(), adv, mask, aggregation="token")
    assert tok.item() == pytest.approx(-(2 * 2 + 3 * -1) / 5)


def test_loss_under_clipping():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    mask = torch.ones(1, 2)
    up, m = grpo_loss(logp, old, torch.tensor([1.0]), mask, eps_low=0.2)
    # positive advantage: ratio 1.5 clipped to 1.2, ratio 0.5 kept -> -(1.2 + 0.5)/2
    assert up.item() == pytest.approx(-(1.2 + 0.5) / 2) and float(m["clip_fraction"]) == 0.5
    down, m = grpo_loss(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2)
    # negative advantage: min(-1.5, -1.2) = -1.5, min(-0.5, -0.8) = -0.8 -> loss (1.5 + 0.8)/2
    assert down.item() == pytest.approx((1.5 + 0.8) / 2) and float(m["clip_fraction"]) == 0.5
    high, _ = grpo_loss(logp, old, torch.tensor([1.0]), mask, eps_low=0.2, eps_high=0.28)
    assert high.item() == pytest.approx(-(1.28 + 0.5) / 2)


def test_k3_kl_values_and_penalty():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # exp(ref - logp) - (ref - logp) - 1 = 0.5 - ln(0.5) - 1
    assert k3_kl(logp, ref).item() == pytest.approx(0.5 - math.log(0.5) - 1)
    lp = logp[None]
    loss, m = grpo_loss(
        lp, lp.detach(), torch.tensor([0.0]), torch.ones(1, 1), ref_logp=ref[None], beta=0.1
    )
    assert loss.item() == pytest.approx(0.1 * (0.5 - math.log(0.5) - 1))
    assert float(m["kl"]) == pytest.approx(0.5 - math.log(0.5) - 1)


def test_gradient_flows_only_through_logp():
    logp = torch.log(torch.tensor([[0.4, 0.6]])).requires_grad_()
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 2))
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5]]))


def test_normalizer_makes_micro_batch_losses_add_up_to_the_batch_loss():
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.1, 0.2, 0.3], [0.3, 0.3, 0.3]]))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([2.0, -1.0, 4.0])
    # at ratio 1 each sequence's mean is -adv: sequence aggregation sums -adv over the update's
    # 3 sequences; token aggregation sums -adv per token over its 6 tokens
    whole, _ = grpo_loss(logp, logp.detach(), adv, mask)
    assert whole.item() == pytest.approx(-(2 - 1 + 4) / 3)
    parts = [grpo_loss(logp[a:b], logp[a:b].detach(), adv[a:b], mask[a:b], normalizer=3)[0]
             for a, b in [(0, 2), (2, 3)]]  # fmt: skip
    assert sum(p.item() for p in parts) == pytest.approx(whole.item())
    tok = [grpo_loss(logp[a:b], logp[a:b].detach(), adv[a:b], mask[a:b], aggregation="token",
                     normalizer=6)[0] for a, b in [(0, 1), (1, 3)]]  # fmt: skip
    assert sum(p.item() for p in tok) == pytest.approx(-(2 * 2 - 1 * 3 + 4 * 1) / 6)


def test_loss_metrics_stay_tensors_until_read():
    logp = torch.zeros(1, 2)
    _, m = grpo_loss(logp, logp, torch.tensor([1.0]), torch.ones(1, 2))
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in m.values())


def test_selective_logp_equals_log_softmax_gather():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.bfloat16)
    targets = torch.randint(0, 11, (3, 5))
    want = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None]).squeeze(-1)
    got = selective_logp(logits, targets)
    assert got.dtype == torch.float32 and torch.allclose(got, want, atol=1e-6)


def test_fill_stats_of_several_rounds_add_up():
    a = FillStats(prompts_drawn=4, difficult_first_draw=1, rounds=2, dropped=1, batch=3,
                  first_draw_correct=10, first_draw_responses=32)  # fmt: skip
    b = FillStats(prompts_drawn=2, difficult_first_draw=0, batch=2, first_draw_correct=16,
                  first_draw_responses=16)  # fmt: skip
    m = FillStats.merge([a, b])
    assert (m.prompts_drawn, m.rounds, m.dropped, m.batch) == (6, 2, 1, 5)
    assert m.difficult_before == pytest.approx(1 / 6)
    assert m.rollout_accuracy == pytest.approx(26 / 48)


def test_epochs_set_the_step_count():
    assert total_steps(GRPOConfig(steps=7), 1000) == 7
    # 2 epochs over 100 prompts, 4 prompts x 2 rounds per step on one process: 25 steps
    assert total_steps(GRPOConfig(epochs=2, batch_size=4, grad_accum=2), 100) == 25
    assert total_steps(GRPOConfig(epochs=1, batch_size=4), 10) == 3  # a last partial step
