"""Request and cost accounting with a hard budget, shared by every thread of a stage."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# USD per million tokens (input, output); override in parameters (`pricing:`) when prices change.
DEFAULT_PRICING: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
}


class BudgetExceeded(RuntimeError):
    """The stage reached ``max_requests`` or ``max_cost_usd``; everything so far is cached."""


class DeadlineExceeded(BudgetExceeded):
    """The stage ran past ``deadline_s``; everything so far is cached."""


def cost_usd(prompt_tokens: int, completion_tokens: int, price: tuple[float, float]) -> float:
    """Cost of one reply.

    >>> round(cost_usd(1000, 500, (2.5, 10.0)), 6)
    0.0075
    """
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


@dataclass
class Usage:
    """What a stage spent; ``cache_hits`` cost nothing."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_hits: int = 0
    retries: int = 0  # replies rejected (invalid JSON, refusal) and asked again

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}.{k}": float(v) for k, v in self.__dict__.items()}


@dataclass
class Budget:
    """Thread-safe guard: ``reserve()`` before each request, ``record()`` after it."""

    max_requests: int | None = None
    max_cost_usd: float | None = None
    usage: Usage = field(default_factory=Usage)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self) -> None:
        with self._lock:
            if self.max_requests is not None and self.usage.requests >= self.max_requests:
                raise BudgetExceeded(f"max_requests={self.max_requests} reached")
            if self.max_cost_usd is not None and self.usage.cost_usd >= self.max_cost_usd:
                raise BudgetExceeded(
                    f"max_cost_usd={self.max_cost_usd} reached (spent ${self.usage.cost_usd:.4f})"
                )
            self.usage.requests += 1

    def record(self, prompt_tokens: int, completion_tokens: int, price: tuple[float, float]):
        with self._lock:
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            self.usage.cost_usd += cost_usd(prompt_tokens, completion_tokens, price)

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self.usage, what, getattr(self.usage, what) + 1)
