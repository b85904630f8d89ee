"""Reward functions, one contract: ``(completions, **columns) -> list[float]``.

Every column of the question record comes as a keyword list, one value per completion
(``answer``, ``options``, ``type``, ``object``, ``defect``, ``mask_path`` …, and the sampler's
``completion_tokens``), in TRL's manner; a reward takes what it needs and ``**_`` the rest.
Parameterised rewards are made by small factories. The registry refuses unknown or duplicate
names, with the valid list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from emit_iad.mmad.parsing import answer_tag, is_well_formed, letter_in, think_text
from emit_iad.mmad.protocol import LETTERS

RewardFn = Callable[..., list[float]]
REWARDS: dict[str, Callable[..., RewardFn]] = {}


def register(name: str):
    def deco(factory):
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is registered twice")
        REWARDS[name] = factory
        return factory

    return deco


def build_rewards(weights: dict[str, float], options: dict[str, dict] | None = None
                  ) -> list[tuple[str, float, RewardFn]]:  # fmt: skip
    """``[(name, weight, fn)]`` for the non-zero weights; unknown names raise."""
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        raise ValueError(f"unknown reward function(s) {unknown}; known: {sorted(REWARDS)}")
    options = options or {}
    return [(n, float(w), REWARDS[n](**options.get(n, {}))) for n, w in weights.items() if w]


def answer_letter(completion: str, n_options: int) -> str | None:
    """The letter inside ``<answer>``, if it is one of the question's letters."""
    tag = answer_tag(completion)
    if tag is None:
        return None
    letter = letter_in(tag)
    return letter if letter is not None and letter in LETTERS[:n_options] else None


def is_correct(completion: str, answer: str, n_options: int) -> bool:
    """What "correct" means everywhere (accuracy, cosine, resampling): the question's letter
    inside ``<answer>``.

    >>> is_correct("<think>x</think><answer>B</answer>", "B", 2), is_correct("B", "B", 2)
    (True, False)
    """
    return answer_letter(completion, n_options) == answer


@register("accuracy")
def accuracy_reward() -> RewardFn:
    """1 correct, 0 wrong, −1 when ``<answer>`` holds no valid letter (EMIT).

    >>> accuracy_reward()(["<answer>B</answer>", "<answer>A</answer>", "B"],
    ...                   answer=["B", "B", "B"], options=[["x", "y"]] * 3)
    [1.0, 0.0, -1.0]
    """

    def fn(completions, answer, options, **_):
        out = []
        for c, a, o in zip(completions, answer, options, strict=True):
            valid = answer_letter(c, len(o)) is not None
            out.append(float(is_correct(c, a, len(o))) if valid else -1.0)
        return out

    return fn


@register("format")
def format_reward() -> RewardFn:
    """1 for ``<think>…</think><answer>…</answer>`` and nothing else, else 0."""

    def fn(completions, **_):
        return [float(is_well_formed(c)) for c in completions]

    return fn


def cosine_scaled(length: int, correct: bool, max_len: int, min_correct: float = 0.5,
                  max_correct: float = 1.0, min_wrong: float = -1.0, max_wrong: float = -0.5
                  ) -> float:  # fmt: skip
    """Cosine length scaling (Yeo et al., 2025): correct answers earn more when short, wrong
    ones are penalised less when long.

    >>> cosine_scaled(0, True, 100), cosine_scaled(100, True, 100)
    (1.0, 0.5)
    >>> cosine_scaled(0, False, 100), cosine_scaled(100, False, 100)
    (-1.0, -0.5)
    """
    progress = min(length, max_len) / max_len
    cos = math.cos(progress * math.pi)
    lo, hi = (min_correct, max_correct) if correct else (max_wrong, min_wrong)
    return lo + 0.5 * (hi - lo) * (1.0 + cos)


@register("cosine")
def cosine_reward(max_len: int = 512, soft_cache_length: int = 0, invalid: float | None = None,
                  **bounds) -> RewardFn:  # fmt: skip
    """Length-aware reward on top of correctness. Correct means what the accuracy reward
    means (the question's letter inside ``<answer>``); the length is the completion's tokens
    (``completion_tokens``, from the sampler; ``max_len`` is in tokens, like
    ``max_new_tokens``), or its whitespace-separated words where no token counts are given.

    EMIT's ``external_cosine`` (plugin.py, ``--soft_cache_length 256``) is this with
    ``soft_cache_length: 256`` (the first 256 tokens are not shaped: the length counts from
    there, up to ``max_len - 256``), wrong answers from ``min_wrong: -0.5`` (short) to
    ``max_wrong: 0.0`` (long), and ``invalid: -1.0`` for an answer without a valid letter.

    >>> f = cosine_reward(max_len=10)
    >>> f(["<answer>B</answer>", "B"], answer=["B", "B"], options=[["x", "y"]] * 2,
    ...   completion_tokens=[0, 10])
    [1.0, -0.5]
    >>> emit = cosine_reward(max_len=512, soft_cache_length=256, invalid=-1.0, min_wrong=-0.5,
    ...                      max_wrong=0.0)
    >>> cols = {"answer": ["B"] * 5, "options": [["x", "y"]] * 5}
    >>> emit(["<answer>B</answer>"] * 2 + ["<answer>A</answer>"] * 2 + ["B"],
    ...      completion_tokens=[200, 512, 256, 512, 100], **cols)
    [1.0, 0.5, -0.5, 0.0, -1.0]
    """
    span = max(1, max_len - soft_cache_length)

    def fn(completions, answer, options, completion_tokens=None, **_):
        lengths = completion_tokens or [len(c.split()) for c in completions]
        out = []
        for c, a, o, n in zip(completions, answer, options, lengths, strict=True):
            letter = answer_letter(c, len(o))
            if letter is None and invalid is not None:
                out.append(float(invalid))
                continue
            right = is_correct(c, a, len(o))
            out.append(cosine_scaled(max(0, n - soft_cache_length), right, span, **bounds))
        return out

    return fn


@register("choice")
def choice_reward() -> RewardFn:
    """AnomalyR1's choice accuracy (``--reward_funcs accuracy`` → ``choice_reward`` in its
    grpo_rec.py): 1 when ``<think>…</think><answer>…</answer>`` holds the right letter, else 0.

    >>> choice_reward()(["<think>x</think><answer>B</answer>", "<answer>B</answer>",
    ...                  "<think>x</think><answer>A</answer>"],
    ...                 answer=["B"] * 3, options=[["x", "y"]] * 3)
    [1.0, 0.0, 0.0]
    """

    def fn(completions, answer, options, **_):
        return [float(THINK_ANSWER.search(c) is not None and answer_letter(c, len(o)) == a)
                for c, a, o in zip(completions, answer, options, strict=True)]  # fmt: skip

    return fn


THINK_ANSWER = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)


def repetition_penalty(text: str, n: int = 4, max_penalty: float = -1.0) -> float:
    """``max_penalty`` × the share of repeated word n-grams; 0 for texts shorter than n words.

    >>> repetition_penalty("a b c d a b c d a b c d", 4)
    -0.5555555555555556
    >>> repetition_penalty("one two three four five", 4)
    -0.0
    """
    words = re.sub(r"<[^>]+>", " ", text).lower().split()
    if len(words) < n:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return max_penalty * (1.0 - len(set(grams)) / len(grams))


@register("repetition")
def repetition_reward(n: int = 4, max_penalty: float = -1.0) -> RewardFn:
    def fn(completions, **_):
        return [repetition_penalty(c, n, max_penalty) for c in completions]

    return fn


_CONCLUSION = re.compile(r"answer is\s*\(?([A-E])\b")


def think_conclusion(completion: str) -> str | None:
    """The letter the reasoning concludes with ("the answer is X", else its last letter)."""
    think = think_text(completion)
    if think is None:
        return None
    found = _CONCLUSION.findall(think)
    return found[-1] if found else letter_in(think)


def roam(think: str | None, answer: str | None, truth: str) -> float:
    """AnomalyR1's reasoning-answer consistency (ROAM).

    >>> [roam("B", "B", "B"), roam(None, "B", "B"), roam(None, "A", "B"),
    ...  roam("A", "A", "B"), roam("A", "B", "B")]
    [1.0, 0.8, 0.05, 0.1, 0.0]
    """
    if think is not None and think == truth and answer == truth:
        return 1.0
    if think is None:
        return 0.8 if answer == truth else 0.05
    if think != truth and answer != truth and think == answer:
        return 0.1
    return 0.0


@register("roam")
def roam_reward() -> RewardFn:
    def fn(completions, answer, options, **_):
        return [
            roam(think_conclusion(c), answer_letter(c, len(o)), a)
            for c, a, o in zip(completions, answer, options, strict=True)
        ]

    return fn


def score(
    completions: Sequence[str], columns: dict, rewards
) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted total per completion and each function's raw values (for logging)."""
    parts = {name: fn(list(completions), **columns) for name, _, fn in rewards}
    total = [sum(w * parts[n][i] for n, w, _ in rewards) for i in range(len(completions))]
    return total, parts
