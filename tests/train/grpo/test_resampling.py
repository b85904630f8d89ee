"""Response resampling as a pure function over a scripted sampler."""

from emit_iad.train.grpo.resampling import Resampler


class Script:
    """Prompt p answers correctly only in the draws listed in ``solved[p]`` (1-based)."""

    def __init__(self, solved):
        self.solved, self.draws = solved, {}

    def sample(self, prompt, n):
        k = self.draws[prompt] = self.draws.get(prompt, 0) + 1
        ok = k in self.solved.get(prompt, ())
        return [f"{prompt}#{k}:{'ok' if ok and i == n - 1 else 'bad'}{i}" for i in range(n)]

    @staticmethod
    def is_correct(prompt, response):
        return ":ok" in response


def feed(prompts):
    it = iter(prompts)
    return lambda: next(it, None)


def test_easy_prompts_pass_untouched_and_difficult_ones_are_redrawn():
    script = Script({"easy": {1}, "late": {3}, "never": set(), "spare1": {1}, "spare2": {1}})
    r = Resampler(script.sample, script.is_correct, group_size=4, max_rounds=3)
    groups, stats = r.fill(
        feed(["easy", "late", "never", "extra", "spare1", "spare2"]), batch_size=3
    )
    assert [g.prompt for g in groups] == ["easy", "late", "spare1"]
    late = groups[1]
    assert late.rounds == 2 and late.replaced == 0  # solved at the 2nd redraw (3rd draw)
    assert late.correct == [True, False, False, False]
    assert late.responses[0] == "late#3:ok3"  # the correct one took an incorrect one's place
    assert stats.dropped == 2  # "never" (3 rounds) and "extra", refilled from the stream
    assert stats.rounds == 2 + 3 + 3  # late 2, never 3, extra 3
    assert stats.prompts_drawn == 5 and stats.difficult_first_draw == 3
    assert stats.difficult_before == 0.6 and stats.difficult_after == 0.0
    # first draws: easy and spare1 have 1 correct of 4 each; late, never, extra none
    assert stats.rollout_accuracy == 2 / 20
    assert "spare2" not in script.draws  # the batch was full: nothing more drawn


def test_refill_keeps_the_batch_size():
    script = Script({"a": {1}, "b": set(), "c": {1}, "d": {1}})
    groups, stats = Resampler(script.sample, script.is_correct, group_size=2, max_rounds=1).fill(
        feed(["a", "b", "c", "d"]), batch_size=3
    )
    assert [g.prompt for g in groups] == ["a", "c", "d"]
    assert stats.prompts_drawn == 4 and stats.difficult_first_draw == 1 and stats.dropped == 1
    assert stats.difficult_before == 0.25


def test_with_resampling_off_it_is_standard_grpo():
    script = Script({"a": {1}, "b": set()})
    groups, stats = Resampler(script.sample, script.is_correct, group_size=2, resample=False).fill(
        feed(["a", "b"]), batch_size=2
    )
    assert [g.prompt for g in groups] == ["a", "b"] and stats.rounds == 0
    assert stats.difficult_after == 0.5 and script.draws == {"a": 1, "b": 1}


def test_limits_end_an_unsolvable_stream():
    script = Script({})
    groups, stats = Resampler(script.sample, script.is_correct, group_size=2, max_rounds=2,
                              max_prompts_factor=2).fill(lambda: "hard", batch_size=2)  # fmt: skip
    assert groups == [] and stats.prompts_drawn == 4 and stats.rounds == 8


def test_emit_variant_regenerates_whole_groups_and_keeps_them_whole():
    """EMIT's _dynamic_sampling by hand: batch of 4 prompts, G 2. First draw: a and c valid;
    round 1 regenerates a batch of groups for b, d (b, d, b, d): d's first new group is valid;
    round 2 regenerates b four times (draws 4-7): draw 4 is valid, kept once."""
    script = Script({"a": {1}, "c": {1}, "d": {2}, "b": {4}})
    r = Resampler(script.sample, script.is_correct, group_size=2, max_rounds=3, variant="emit")
    groups, stats = r.fill(feed(["a", "b", "c", "d", "never-drawn"]), batch_size=4)
    assert [g.prompt for g in groups] == ["a", "c", "d", "b"]
    assert [g.rounds for g in groups] == [0, 0, 1, 2]
    assert groups[2].responses == ["d#2:bad0", "d#2:ok1"]  # the new group whole, not spliced
    assert groups[3].responses == ["b#4:bad0", "b#4:ok1"]  # b's draws 2, 3 failed, 4 solved it
    assert script.draws == {"a": 1, "b": 7, "c": 1, "d": 3}  # rounds of 4 groups each
    assert stats.rounds == 8 and stats.dropped == 0 and stats.repeated == 0
    assert stats.prompts_drawn == 4 and stats.difficult_first_draw == 2
    assert "never-drawn" not in script.draws  # no prompt is drawn to refill


def test_emit_variant_repeats_valid_groups_when_the_batch_stays_short():
    script = Script({"a": {1}, "b": {1}, "c": {1}})
    r = Resampler(script.sample, script.is_correct, group_size=2, max_rounds=2, variant="emit")
    groups, stats = r.fill(feed(["a", "b", "c", "x", "y", "z", "w", "v"]), batch_size=8)
    # valid [a, b, c] repeated, the last 8 taken: b c a b c a b c (EMIT's resample_groups)
    assert [g.prompt for g in groups] == list("bcabcabc")
    assert [g.repeated for g in groups] == [False, False] + [True] * 6
    assert stats.dropped == 5 and stats.repeated == 5 and stats.rounds == 16
    assert stats.difficult_after == 0.0


def test_emit_variant_with_nothing_solvable_gives_no_group():
    script = Script({})
    r = Resampler(script.sample, script.is_correct, group_size=2, max_rounds=1, variant="emit")
    groups, stats = r.fill(feed(["x", "y"]), batch_size=2)
    assert groups == [] and stats.dropped == 2 and stats.rounds == 2
