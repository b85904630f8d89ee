"""EMIT's response resampling, as a pure function over a sampler callable.

A prompt is *difficult* when none of its G responses is correct. Two variants:

- ``emit`` (EMIT's official ``grpo_Trainer._dynamic_sampling``): a group is valid when one of
  its responses is correct, and valid groups are kept whole. Each round (at most
  ``max_rounds``) regenerates *whole groups* for the prompts still without a valid group, as
  many as the batch holds (the unsolved prompts, then repeats of them), and keeps the first new
  valid group of each. No new prompt is drawn: if groups are still missing after the last
  round, the valid groups are repeated to fill the batch (the last ``batch`` groups of the
  valid list repeated).
- ``splice`` (the paper's text read literally): a difficult prompt is sampled again until a
  correct response turns up, which takes the place of the first incorrect one; prompts never
  solved are left out, and more prompts are drawn so that the batch keeps its size.

With resampling off every group is kept as drawn (standard GRPO: an all-wrong group has zero
advantage and teaches nothing). Hand-written: TRL has no dynamic-sampling hook to put this in.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emit_iad.train.world import World


@dataclass
class Group:
    prompt: Any
    responses: list[Any]
    correct: list[bool]
    rounds: int = 0  # resampling rounds this prompt needed
    replaced: int | None = None  # index of the response a resampled correct one replaced
    repeated: bool = False  # a copy of a valid group that fills the batch (``emit``)


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
    repeated: int = 0  # groups repeated to fill the batch (``emit``)

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
                "prompts_drawn": float(self.prompts_drawn),
                "repeated_groups": float(self.repeated)}  # fmt: skip


@dataclass
class Resampler:
    """``sample(prompt, n) -> n responses`` (or ``sample_many(prompts, n)``, one call for a
    round's prompts: one ``generate``); ``is_correct(prompt, response) -> bool``.

    Works in rounds over the *global* batch: a round's prompts are split over the processes of
    ``world``, each samples its share, the results are gathered, and every process takes the
    same decisions (difficulty, resampling, dropping, refilling). One process: the same, alone.
    """

    sample: Callable[[Any, int], list[Any]] | None
    is_correct: Callable[[Any, Any], bool]
    group_size: int = 8
    resample: bool = True
    max_rounds: int = 3
    max_prompts_factor: int = 4  # give up refilling after batch_size × this many prompts
    stats: FillStats = field(default_factory=FillStats)
    sample_many: Callable[[list, int], list[list[Any]]] | None = None
    world: World = field(default_factory=World)
    variant: str = "splice"  # splice | emit (module docstring)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"resampling variant {self.variant!r}; use one of {VARIANTS}")

    def draw_many(self, prompts: list) -> list[Group]:
        """G responses for each prompt, sampled by the processes in shares, judged, gathered."""
        mine = self.world.share(prompts)
        if self.sample_many is not None:
            drawn = self.sample_many(mine, self.group_size) if mine else []
        else:
            drawn = [self.sample(p, self.group_size) for p in mine]
        judged = [(r, [self.is_correct(p, x) for x in r]) for p, r in zip(mine, drawn, strict=True)]
        merged = self.world.merge(self.world.gather(judged), len(prompts))
        return [Group(p, list(r), list(ok)) for p, (r, ok) in zip(prompts, merged, strict=True)]

    def fill(
        self, next_prompt: Callable[[], Any | None], batch_size: int
    ) -> tuple[list[Group], FillStats]:
        """Groups for one update (``batch_size`` of them, global); ``next_prompt()`` returns
        the same prompts on every process, None when the data run out."""
        if self.variant == "emit" and self.resample:
            return self._fill_emit(next_prompt, batch_size)
        stats = FillStats()
        groups: list[Group] = []
        cap = batch_size * self.max_prompts_factor
        while len(groups) < batch_size and stats.prompts_drawn < cap:
            prompts = []
            while len(prompts) < min(batch_size - len(groups), cap - stats.prompts_drawn):
                prompt = next_prompt()
                if prompt is None:
                    break
                prompts.append(prompt)
            if not prompts:
                break
            stats.prompts_drawn += len(prompts)
            drawn = self.draw_many(prompts)
            for group in drawn:
                stats.first_draw_correct += sum(group.correct)
                stats.first_draw_responses += len(group.correct)
            difficult = [g for g in drawn if not any(g.correct)]
            stats.difficult_first_draw += len(difficult)
            if self.resample:
                self._resolve(difficult, stats)
            for group in drawn:
                if any(group.correct) or not self.resample:
                    groups.append(group)
                else:
                    stats.dropped += 1
        stats.batch = len(groups)
        stats.difficult_in_batch = sum(not any(g.correct) for g in groups)
        return groups, stats

    def _resolve(self, difficult: list[Group], stats: FillStats) -> None:
        """Up to ``max_rounds`` redraws of the unsolved groups, all in one call per round; the
        first correct response takes the place of an incorrect one."""
        pending = list(difficult)
        for round_ in range(1, self.max_rounds + 1):
            if not pending:
                return
            extra = self.draw_many([g.prompt for g in pending])
            stats.rounds += len(pending)
            still = []
            for group, new in zip(pending, extra, strict=True):
                group.rounds = round_
                if True in new.correct:
                    k = new.correct.index(True)
                    i = group.correct.index(False)
                    group.responses[i], group.correct[i], group.replaced = new.responses[k], True, i
                else:
                    still.append(group)
            pending = still

    def _fill_emit(self, next_prompt, batch_size: int) -> tuple[list[Group], FillStats]:
        """EMIT's ``_dynamic_sampling`` over one batch of ``batch_size`` prompts."""
        stats = FillStats()
        prompts = [p for p in (next_prompt() for _ in range(batch_size)) if p is not None]
        stats.prompts_drawn = len(prompts)
        drawn = self.draw_many(prompts)
        for group in drawn:
            stats.first_draw_correct += sum(group.correct)
            stats.first_draw_responses += len(group.correct)
        valid = [g for g in drawn if any(g.correct)]
        pending = [i for i, g in enumerate(drawn) if not any(g.correct)]
        stats.difficult_first_draw = len(pending)
        for round_ in range(1, self.max_rounds + 1):
            if not pending:
                break
            slots = emit_slots(pending, len(prompts))  # a whole batch of groups per round
            extra = self.draw_many([prompts[i] for i in slots])
            stats.rounds += len(slots)
            solved = []
            for i, new in zip(slots, extra, strict=True):
                if i in pending and i not in solved and any(new.correct):
                    new.rounds = round_
                    valid.append(new)
                    solved.append(i)
            pending = [i for i in pending if i not in solved]
        stats.dropped = len(pending)
        groups = emit_fill(valid, len(prompts))
        stats.repeated = max(0, len(groups) - len(valid))
        stats.batch = len(groups)
        return groups, stats


VARIANTS = ("splice", "emit")


def emit_slots(pending: list[int], size: int) -> list[int]:
    """The prompts a round regenerates: every unsolved one, then repeats of them until the
    round holds ``size`` groups (EMIT draws the repeats at random; here they cycle, the same
    on every process without a shared random state).

    >>> emit_slots([1, 4], 5), emit_slots([0, 1, 2], 2)
    ([1, 4, 1, 4, 1], [0, 1])
    """
    return [pending[k % len(pending)] for k in range(size)] if pending else []


def emit_fill(valid: list, size: int) -> list:
    """``size`` groups from the valid ones: the first ``size``, or, when short, the valid list
    repeated and its *last* ``size`` taken (EMIT's ``resample_groups``). Repeats are copies.

    >>> emit_fill(list("abc"), 2), emit_fill(list("abc"), 8), emit_fill([], 4)
    (['a', 'b'], ['b', 'c', 'a', 'b', 'c', 'a', 'b', 'c'], [])
    """
    if len(valid) >= size or not valid:
        return list(valid[:size])
    times = -(-size // len(valid))
    copies = [_repeat(g) for _ in range(times - 1) for g in valid]
    return (list(valid) + copies)[-size:]


def _repeat(group):
    twin = copy.copy(group)
    if isinstance(twin, Group):
        twin.repeated = True
    return twin
