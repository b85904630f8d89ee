"""EMIT's response resampling, as a pure function over a sampler callable.

A prompt is *difficult* when none of its G responses is correct. With resampling on, it is
sampled again (up to ``max_rounds`` times) until a correct response turns up, which then takes
the place of the first incorrect one; prompts never solved are left out of the update, and more
prompts are drawn so that the batch keeps its size. With it off, every group is kept as drawn
(standard GRPO: an all-wrong group has zero advantage and teaches nothing).

Hand-written: TRL has no dynamic-sampling hook to put this in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Group:
    prompt: Any
    responses: list[Any]
    correct: list[bool]
    rounds: int = 0  # resampling rounds this prompt needed
    replaced: int | None = None  # index of the response a resampled correct one replaced


@dataclass
class FillStats:
    prompts_drawn: int = 0
    difficult_first_draw: int = 0
    rounds: int = 0
    dropped: int = 0
    difficult_in_batch: int = 0
    batch: int = 0
    first_draw_correct: int = 0  # correct responses among the first G of every drawn prompt
    first_draw_responses: int = 0

    @property
    def difficult_before(self) -> float:
        """Share of drawn prompts that were difficult at their first G responses."""
        return self.difficult_first_draw / self.prompts_drawn if self.prompts_drawn else 0.0

    @property
    def difficult_after(self) -> float:
        """Share of the batch's groups still without a correct response."""
        return self.difficult_in_batch / self.batch if self.batch else 0.0

    @property
    def rollout_accuracy(self) -> float:
        """Share of correct responses in the policy's first draws: the on-policy accuracy,
        before resampling adds correct responses."""
        return (
            self.first_draw_correct / self.first_draw_responses
            if self.first_draw_responses
            else 0.0
        )

    @classmethod
    def merge(cls, parts: list[FillStats]) -> FillStats:
        """The stats of several fills taken together (counts add up)."""
        out = cls()
        for part in parts:
            for name in out.__dataclass_fields__:
                setattr(out, name, getattr(out, name) + getattr(part, name))
        return out

    def as_metrics(self) -> dict[str, float]:
        return {"difficult_before": self.difficult_before, "difficult_after": self.difficult_after,
                "rollout_accuracy": self.rollout_accuracy,
                "resample_rounds": float(self.rounds), "dropped_prompts": float(self.dropped),
                "prompts_drawn": float(self.prompts_drawn)}  # fmt: skip


@dataclass
class Resampler:
    """``sample(prompt, n) -> n responses``; ``is_correct(prompt, response) -> bool``."""

    sample: Callable[[Any, int], list[Any]]
    is_correct: Callable[[Any, Any], bool]
    group_size: int = 8
    resample: bool = True
    max_rounds: int = 3
    max_prompts_factor: int = 4  # give up refilling after batch_size × this many prompts
    stats: FillStats = field(default_factory=FillStats)

    def draw(self, prompt) -> Group:
        responses = self.sample(prompt, self.group_size)
        return Group(prompt, responses, [self.is_correct(prompt, r) for r in responses])

    def fill(
        self, next_prompt: Callable[[], Any | None], batch_size: int
    ) -> tuple[list[Group], FillStats]:
        """Groups for one update; ``next_prompt()`` returns None when the data run out."""
        stats = FillStats()
        groups: list[Group] = []
        while (
            len(groups) < batch_size and stats.prompts_drawn < batch_size * self.max_prompts_factor
        ):
            prompt = next_prompt()
            if prompt is None:
                break
            stats.prompts_drawn += 1
            group = self.draw(prompt)
            stats.first_draw_correct += sum(group.correct)
            stats.first_draw_responses += len(group.correct)
            if any(group.correct):
                groups.append(group)
                continue
            stats.difficult_first_draw += 1
            if not self.resample:
                groups.append(group)
                continue
            if self._resolve(group, stats):
                groups.append(group)
            else:
                stats.dropped += 1
        stats.batch = len(groups)
        stats.difficult_in_batch = sum(not any(g.correct) for g in groups)
        return groups, stats

    def _resolve(self, group: Group, stats: FillStats) -> bool:
        for round_ in range(1, self.max_rounds + 1):
            extra = self.sample(group.prompt, self.group_size)
            stats.rounds += 1
            group.rounds = round_
            for response in extra:
                if self.is_correct(group.prompt, response):
                    i = group.correct.index(False)
                    group.responses[i], group.correct[i], group.replaced = response, True, i
                    return True
        return False
