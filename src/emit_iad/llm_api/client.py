"""One OpenAI-compatible chat client for the whole project (descriptions, evaluation).

Transport faults (429 with ``Retry-After``, 5xx, timeouts, dropped connections) are retried by
the official ``openai`` client itself, with exponential backoff and jitter (``max_retries``).
On top of it this module adds only what the library does not do: a reply cache, a budget,
bounded concurrency, and a second loop for replies that arrive but are unusable (invalid JSON,
wrong schema, refusals), which are asked again up to ``max_attempts`` and then reported.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import openai

from emit_iad.llm_api.budget import DEFAULT_PRICING, Budget, BudgetExceeded, DeadlineExceeded
from emit_iad.llm_api.cache import ReplyCache, request_key
from emit_iad.params import reject_unknown, setting

log = logging.getLogger(__name__)
T = TypeVar("T")

CREDENTIALS_HINT = (
    "set OPENAI_API_KEY, or `openai: {api_key: ...}` in conf/local/credentials.yml "
    "(and `base_url` for Azure, vLLM or another OpenAI-compatible server)"
)


class LLMConfigError(RuntimeError):
    """The endpoint refuses every request (bad key, unknown model, wrong URL): stop at once."""


class InvalidReply(ValueError):
    """A reply that arrived but cannot be used (not JSON, wrong schema, a refusal)."""


_REFUSAL = re.compile(
    r"^\W*(i['’]m sorry|i am sorry|sorry, (but )?i|i can(no|['’])t (help|assist|comply|provide)"
    r"|i cannot (help|assist|comply|provide)|i['’]m (unable|not able) to|i am (unable|not able) to"
    r"|as an ai\b)",
    re.IGNORECASE,
)


def is_refusal(text: str | None, refusal: str | None = None) -> bool:
    """True for a model's refusal: the API's ``refusal`` field, or a refusal-style opening.

    >>> is_refusal("I'm sorry, but I can't help with that.")
    True
    >>> is_refusal('{"characteristics": "I am sorry to report a scratch"}')
    False
    """
    return bool(refusal) or bool(text and _REFUSAL.match(text.strip()))


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_object(text: str | None) -> dict[str, Any]:
    """The JSON object in a reply (code fences allowed); raises :class:`InvalidReply`.

    >>> parse_json_object('```json\\n{"a": 1}\\n```')
    {'a': 1}
    """
    if not text or not text.strip():
        raise InvalidReply("empty reply")
    if is_refusal(text):
        raise InvalidReply(f"refusal: {text.strip()[:80]!r}")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"not JSON ({exc.msg} at {exc.pos}): {body[:80]!r}") from None
    if not isinstance(value, dict):
        raise InvalidReply(f"JSON is a {type(value).__name__}, not an object")
    return value


@dataclass(frozen=True)
class ClientConfig:
    """Endpoint, sampling and limits; mirrors the ``llm`` block of a stage's parameters."""

    model: str = setting("gpt-4o", "the endpoint's model name")
    base_url: str | None = setting(
        None, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (null: OpenAI's)")
    timeout_s: float = setting(60.0, "seconds per request before it is retried")
    max_retries: int = setting(
        6, "transport retries inside the openai client (429, 5xx, timeouts), with backoff")
    max_attempts: int = setting(3, "asks per item when a reply is invalid or a refusal")
    concurrency: int = setting(4, "requests in flight")
    temperature: float = setting(0.2, "sampling temperature")
    max_tokens: int = setting(700, "reply cap in tokens")
    json_mode: bool = setting(True, "ask for a JSON object (response_format)")
    max_requests: int | None = setting(
        None, "budget: the stage stops cleanly after this many requests (null: no limit)")
    max_cost_usd: float | None = setting(
        None, "budget in US dollars from the replies' token usage and pricing (null: none)")
    # a hanging endpoint otherwise costs attempts × retries × timeout_s per item
    deadline_s: float | None = setting(
        None, "seconds for all of a stage's requests, then it stops with what is cached")
    cache_dir: str = setting(
        "data/cache/llm", "content-addressed reply cache: a rerun never pays twice")
    pricing: dict[str, Sequence[float]] = setting(
        factory=dict, help="model -> [input, output] US dollars per million tokens")

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1 or self.max_retries < 0:
            raise ValueError("llm.concurrency and llm.max_attempts must be >= 1, max_retries >= 0")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError("llm.deadline_s must be > 0 (or null: no deadline)")

    @classmethod
    def from_params(cls, params: dict) -> ClientConfig:
        reject_unknown(cls, params, "the stage's `llm` parameters")
        return cls(**params)

    def price(self) -> tuple[float, float] | None:
        table = {**DEFAULT_PRICING, **{k: tuple(v) for k, v in self.pricing.items()}}
        return table.get(self.model)


@dataclass(frozen=True)
class Reply(Generic[T]):
    value: T
    key: str
    cached: bool


@dataclass(frozen=True)
class Failure:
    key: str
    reason: str


@dataclass(frozen=True)
class Job(Generic[T]):
    """One request: chat messages and how to turn the reply text into a value (or raise).

    ``refusal_is_reply``: whether the model's refusal is its reply (an evaluated model's
    answer: MMAD scores it wrong) rather than a failed request to ask again (a description)."""

    messages: list[dict]
    parse: Callable[[str], T]
    refusal_is_reply: bool = False


class ChatClient:
    """Cached, budgeted, concurrent chat completions against any OpenAI-compatible endpoint."""

    def __init__(
        self,
        config: ClientConfig,
        api_key: str | None = None,
        organization: str | None = None,
        base_url: str | None = None,
    ):
        self.config = config
        self.cache = ReplyCache(config.cache_dir)
        self.budget = Budget(config.max_requests, config.max_cost_usd)
        self._price = config.price()
        self._client: openai.OpenAI | None = None
        self._client_args = {
            "api_key": api_key,
            "organization": organization,
            "base_url": base_url or config.base_url,
            "timeout": config.timeout_s,
            "max_retries": config.max_retries,
        }
        self._client_lock = threading.Lock()
        if self._price is None and config.max_cost_usd is not None:
            log.warning(
                "No price known for model %r: max_cost_usd cannot be enforced; add it under "
                "`pricing:` (USD per million input and output tokens)",
                config.model,
            )

    def _openai(self) -> openai.OpenAI:
        # Created on first use, so a fully cached run needs no key at all.
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = openai.OpenAI(**self._client_args)
                except openai.OpenAIError as exc:
                    raise LLMConfigError(
                        f"cannot create the OpenAI client ({exc}); {CREDENTIALS_HINT}"
                    ) from None
            return self._client

    def redact(self, error: object) -> str:
        """An endpoint's error text without the API key (a proxy may echo it back in a 401's
        body), as it then goes to logs, reports and MLflow."""
        text = str(error)
        key = self._client_args.get("api_key") or os.environ.get("OPENAI_API_KEY") or ""
        return text.replace(key, f"{key[:3]}…(redacted)") if len(key) >= 8 else text

    def payload(self, messages: list[dict]) -> dict[str, Any]:
        c = self.config
        payload = {
            "model": c.model,
            "messages": messages,
            "temperature": c.temperature,
            "max_tokens": c.max_tokens,
        }
        if c.json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def complete(self, job: Job[T]) -> Reply[T]:
        """The parsed reply of one job, from the cache or the endpoint.

        Raises :class:`BudgetExceeded`, :class:`LLMConfigError`, or :class:`InvalidReply` /
        ``openai.APIError`` when every attempt failed.
        """
        payload = self.payload(job.messages)
        key = request_key(payload)
        hit = self.cache.get(key)
        if hit is not None:
            try:
                value = job.parse(hit["content"])
                self.budget.count("cache_hits")
                return Reply(value, key, cached=True)
            except InvalidReply:
                pass  # the parser became stricter since: ask again
        last: Exception | None = None
        for attempt in range(self.config.max_attempts):
            if attempt:
                self.budget.count("retries")
            self.budget.reserve()
            try:
                content = self._create(payload, job.refusal_is_reply)
                value = job.parse(content)
            except InvalidReply as exc:
                last = exc
                log.debug("invalid reply for %s (attempt %d): %s", key[:12], attempt + 1, exc)
                continue
            self.cache.put(key, {"content": content, "model": self.config.model})
            return Reply(value, key, cached=False)
        assert last is not None
        raise last

    def _create(self, payload: dict, refusal_is_reply: bool = False) -> str:
        try:
            response = self._openai().chat.completions.create(**payload)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise LLMConfigError(
                f"the endpoint refused the API key ({self.redact(exc)}); {CREDENTIALS_HINT}"
            ) from None
        except openai.NotFoundError as exc:
            raise LLMConfigError(
                f"model {payload['model']!r} or endpoint not found ({self.redact(exc)}); check "
                "`llm.model` and `llm.base_url` in the stage's parameters"
            ) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
            raise InvalidReply(f"malformed response body: {exc}") from None
        usage = getattr(response, "usage", None)
        if usage is not None and self._price is not None:
            self.budget.record(usage.prompt_tokens or 0, usage.completion_tokens or 0, self._price)
        elif usage is not None:
            self.budget.record(usage.prompt_tokens or 0, usage.completion_tokens or 0, (0.0, 0.0))
        if not response.choices:
            raise InvalidReply("reply has no choices")
        message = response.choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal_is_reply:  # the reply as the model gave it, refusal or empty included
            return message.content or refusal or ""
        if is_refusal(message.content, refusal):
            raise InvalidReply(f"refusal: {(refusal or message.content or '')[:80]!r}")
        return message.content or ""

    def map(
        self, jobs: Sequence[Job[T]], progress: Callable[[Iterable, int], Iterable] | None = None
    ) -> list[Reply[T] | Failure]:
        """Run jobs with at most ``concurrency`` in flight; results in job order.

        Items whose every attempt failed come back as :class:`Failure`. When the budget runs
        out, the jobs in flight finish, nothing new starts, and :class:`BudgetExceeded` is raised
        with the count of what is done (cached) and what is left.
        """
        results: list[Reply[T] | Failure | None] = [None] * len(jobs)
        stop = threading.Event()
        errors: list[BaseException] = []
        deadline = (time.monotonic() + self.config.deadline_s
                    if self.config.deadline_s is not None else None)  # fmt: skip

        def run(i: int, job: Job[T]) -> None:
            if stop.is_set():
                return
            if deadline is not None and time.monotonic() > deadline:
                stop.set()
                errors.append(DeadlineExceeded(f"llm.deadline_s={self.config.deadline_s} passed"))
                return
            try:
                results[i] = self.complete(job)
            except (InvalidReply, openai.APIError) as exc:
                key = request_key(self.payload(job.messages))
                results[i] = Failure(key, f"{type(exc).__name__}: {self.redact(exc)}")
            except (BudgetExceeded, LLMConfigError) as exc:
                stop.set()
                errors.append(exc)

        with ThreadPoolExecutor(max_workers=self.config.concurrency) as pool:
            futures = [pool.submit(run, i, job) for i, job in enumerate(jobs)]
            done = as_completed(futures)
            for fut in progress(done, len(futures)) if progress else done:
                fut.result()
        fatal = next((e for e in errors if isinstance(e, LLMConfigError)), None)
        if fatal is not None:
            raise fatal
        if errors and isinstance(errors[0], DeadlineExceeded):
            finished = sum(r is not None for r in results)
            raise DeadlineExceeded(
                f"{errors[0]}: {finished} of {len(jobs)} requests are done and cached, "
                f"{len(jobs) - finished} not sent. Run the stage again to go on from the cache "
                "(raise `deadline_s` in the stage's `llm` parameters, or check the endpoint "
                "if it is slow)."
            )
        if errors:
            finished = sum(r is not None for r in results)
            raise BudgetExceeded(
                f"LLM budget exhausted ({errors[0]}): {finished} of {len(jobs)} requests are done "
                f"and cached, {len(jobs) - finished} not sent. Raise the limit in the stage's "
                "`llm` parameters and run again: cached replies are not paid twice."
            )
        return results  # type: ignore[return-value]
