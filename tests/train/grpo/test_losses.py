"""The policy losses of the registry (issue #26, item 2), each against its paper's formula
computed by hand on two completions of 2 and 3 tokens."""

import math

import pytest
import torch

from emit_iad.train.grpo.advantages import emit_advantages
from emit_iad.train.grpo.loss import POLICY_LOSSES, LossBatch, LossSettings, UpdateSize, policy_loss

# two completions: 2 and 3 tokens; ratios per token r = exp(logp − old)
RATIOS = [[1.5, 0.9, 1.0], [0.5, 1.1, 1.3]]
MASK = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
ADV = [1.0, -2.0]
LOGP = [[-0.5, -1.0, -0.3], [-2.0, -0.7, -1.2]]


def batch(grad: bool = False) -> LossBatch:
    logp = torch.tensor(LOGP, requires_grad=grad)
    old = torch.tensor(LOGP) - torch.log(torch.tensor(RATIOS))
    return LossBatch(logp, old, torch.tensor(ADV), torch.tensor(MASK))


def clip_term(r: float, a: float, lo: float = 0.8, hi: float = 1.2) -> float:
    """−min(r·A, clip(r)·A), PPO's per-token objective."""
    return -min(r * a, min(max(r, lo), hi) * a)


def run(name: str, size: UpdateSize | None = None, eps_high=None, grad=False):
    return policy_loss(name, batch(grad), LossSettings(eps_low=0.2, eps_high=eps_high), size)


def test_grpo_averages_each_sequence_then_the_sequences():
    seq0 = (clip_term(1.5, 1.0) + clip_term(0.9, 1.0)) / 2  # −(1.2 + 0.9)/2
    seq1 = (clip_term(0.5, -2.0) + clip_term(1.1, -2.0) + clip_term(1.3, -2.0)) / 3
    loss, m = run("grpo")
    assert loss.item() == pytest.approx((seq0 + seq1) / 2)
    # clipped: 1.5 (A>0, above 1.2), 0.5 (A<0, below 0.8); 1.3 with A<0 is not clipped
    assert float(m["clip_fraction"]) == pytest.approx(2 / 5)


def test_dapo_sums_tokens_over_the_update_with_clip_higher():
    terms = [clip_term(1.5, 1.0, hi=1.28), clip_term(0.9, 1.0, hi=1.28),
             clip_term(0.5, -2.0, hi=1.28), clip_term(1.1, -2.0, hi=1.28),
             clip_term(1.3, -2.0, hi=1.28)]  # fmt: skip
    loss, _ = run("dapo", eps_high=0.28)
    assert loss.item() == pytest.approx(sum(terms) / 5)
    assert sum(terms) / 5 == pytest.approx((-1.28 - 0.9 + 1.6 + 2.2 + 2.6) / 5)


def test_dr_grpo_divides_by_sequences_times_the_max_length():
    terms = [clip_term(1.5, 1.0), clip_term(0.9, 1.0), clip_term(0.5, -2.0),
             clip_term(1.1, -2.0), clip_term(1.3, -2.0)]  # fmt: skip
    loss, _ = run("dr_grpo", UpdateSize(sequences=2, tokens=5, max_length=8))
    assert loss.item() == pytest.approx(sum(terms) / (2 * 8))


def test_bnpo_averages_each_micro_batch_over_its_own_tokens():
    terms = [clip_term(1.5, 1.0), clip_term(0.9, 1.0), clip_term(0.5, -2.0),
             clip_term(1.1, -2.0), clip_term(1.3, -2.0)]  # fmt: skip
    loss, _ = run("bnpo", UpdateSize(sequences=4, tokens=11, micro_batches=2))
    assert loss.item() == pytest.approx(sum(terms) / 5 / 2)  # this micro-batch's 5 tokens, of 2


def test_gspo_clips_the_sequence_ratio_and_its_gradient_is_the_sequences():
    s0 = math.exp((math.log(1.5) + math.log(0.9)) / 2)  # geometric mean of the ratios: 1.162
    s1 = math.exp((math.log(0.5) + math.log(1.1) + math.log(1.3)) / 3)  # 0.894
    loss, m = run("gspo", grad=True)
    assert loss.item() == pytest.approx((clip_term(s0, 1.0) + clip_term(s1, -2.0)) / 2)
    assert float(m["clip_fraction"]) == 0.0  # 1.162 < 1.2 and 0.894 > 0.8
    # ∂/∂logp_t of −s·A/G over a sequence of |y| tokens: −s·A/(G·|y|) per token (GSPO-token)
    loss.backward()
    grad = batch().logp.new_tensor([[-s0 * 1.0 / 4, -s0 * 1.0 / 4, 0.0],
                                    [s1 * 2.0 / 6, s1 * 2.0 / 6, s1 * 2.0 / 6]])  # fmt: skip
    logp = batch(grad=True)
    value, _ = policy_loss("gspo", logp, LossSettings(), None)
    value.backward()
    assert torch.allclose(logp.logp.grad, grad, atol=1e-6)


def test_cispo_weights_log_probabilities_by_the_clipped_ratio_without_its_gradient():
    w = [[1.2, 0.9, 0.0], [0.8, 1.1, 1.2]]  # clip(r, 0.8, 1.2)
    value = -sum(w[i][t] * ADV[i] * LOGP[i][t] for i in range(2) for t in range(3)
                 if MASK[i][t]) / 5  # fmt: skip
    b = batch(grad=True)
    loss, m = policy_loss("cispo", b, LossSettings(eps_low=0.2), None)
    assert loss.item() == pytest.approx(value)
    loss.backward()  # the gradient is −w·A/N per token: the weight is a constant
    expect = torch.tensor([[-w[0][t] * ADV[0] / 5 * MASK[0][t] for t in range(3)],
                           [-w[1][t] * ADV[1] / 5 for t in range(3)]])  # fmt: skip
    assert torch.allclose(b.logp.grad, expect, atol=1e-6)
    assert float(m["clip_fraction"]) == pytest.approx(3 / 5)  # 1.5, 0.5, 1.3


def test_every_loss_adds_up_over_micro_batches_but_bnpo():
    """With the update's size, the micro-batch losses sum to the whole batch's loss."""
    for name in POLICY_LOSSES:
        size = UpdateSize(sequences=2, tokens=5, micro_batches=2, max_length=3)
        whole = policy_loss(name, batch(), LossSettings(), UpdateSize(2, 5, 1, 3))[0]
        b = batch()
        parts = [policy_loss(name, LossBatch(b.logp[i:i + 1], b.old_logp[i:i + 1],
                                             b.advantages[i:i + 1], b.mask[i:i + 1]),
                             LossSettings(), size)[0] for i in range(2)]  # fmt: skip
        if name == "bnpo":  # each micro-batch its own token mean, averaged
            continue
        assert sum(p.item() for p in parts) == pytest.approx(whole.item()), name


def test_advantage_estimators_and_reweighting_compose():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 0.0]])
    correct = torch.tensor([[True, False, False, True], [False] * 4])
    mean = emit_advantages(rewards, correct, reweight=False, estimator="group_mean")
    assert mean.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.5, 0.5, 0.5, -1.5]]
    # batch std of all 8 rewards: mean 1.0, sum of squares 6 → sqrt(6/7)
    batch_std = math.sqrt(6 / 7)
    scaled = emit_advantages(rewards, correct, reweight=False, estimator="batch")
    assert scaled[0, 0].item() == pytest.approx(0.5 / (batch_std + 1e-4))
    # EMIT's weight 1 + 2/4 for the first group (2 incorrect of 4), 1 for the all-wrong one
    both = emit_advantages(rewards, correct, reweight=True, estimator="group_mean")
    assert both[0].tolist() == [0.75, -0.75, -0.75, 0.75] and both[1].tolist() == mean[1].tolist()
    with pytest.raises(ValueError, match=r"grpo\.advantages must be one of"):
        emit_advantages(rewards, correct, reweight=False, estimator="ppo")
