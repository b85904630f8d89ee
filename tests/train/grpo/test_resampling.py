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
