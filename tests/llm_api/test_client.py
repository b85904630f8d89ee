"""The shared chat client on the real openai client against a local server with faults."""

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emit_iad.llm_api import (
    BudgetExceeded,
    ChatClient,
    ClientConfig,
    Failure,
    InvalidReply,
    Job,
    LLMConfigError,
    Reply,
    ReplyCache,
    is_refusal,
    parse_json_object,
    request_key,
)
from emit_iad.llm_api.budget import Budget, cost_usd
from tests.fake_openai import FakeOpenAI

KEY = "sk-test-not-a-real-key-1234567890"


def client_for(server, tmp_path, **overrides) -> ChatClient:
    settings = {"model": "gpt-4o", "base_url": server.url, "timeout_s": 0.5, "max_retries": 6,
                "concurrency": 4, "cache_dir": str(tmp_path / "cache")}  # fmt: skip
    return ChatClient(ClientConfig(**{**settings, **overrides}), api_key=KEY)


def job(i: int) -> Job:
    text = f'Item {i}. Reply as JSON: {{"characteristics": "..."}}'
    return Job([{"role": "user", "content": text}], parse_json_object)


# ---- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["I'm sorry, but I can't help with that.", "I’m sorry, I cannot", "Sorry, but I can't do it",
     "I cannot assist with this request.", "I am unable to help", "As an AI, I won't"],
)  # fmt: skip
def test_refusals_are_recognised(text):
    assert is_refusal(text)
    with pytest.raises(InvalidReply, match="refusal"):
        parse_json_object(text)


def test_the_api_refusal_field_counts_and_ordinary_text_does_not():
    assert is_refusal("anything", refusal="policy")
    assert not is_refusal('{"characteristics": "I cannot see any defect"}')
    assert not is_refusal("The sorry state of the surface")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty"), ("   ", "empty"), ("Sure! here", "not JSON"), ("[1, 2]", "not an object"),
     ('{"a": ', "not JSON")],
)  # fmt: skip
def test_unusable_replies_raise_invalid_reply(text, reason):
    with pytest.raises(InvalidReply, match=reason):
        parse_json_object(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=5), st.booleans())
def test_any_json_object_round_trips_with_or_without_fences(obj, fenced):
    text = json.dumps(obj)
    if fenced:
        text = f"```json\n{text}\n```"
    assert parse_json_object(text) == obj


@given(st.text(max_size=200))
def test_the_parser_fails_only_with_invalid_reply(text):
    with contextlib.suppress(InvalidReply):
        assert isinstance(parse_json_object(text), dict)


def test_request_key_ignores_dict_order_but_not_content():
    a = {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0.2}
    b = dict(reversed(list(a.items())))
    assert request_key(a) == request_key(b)
    assert request_key(a) != request_key({**a, "temperature": 0.3})


def test_cache_round_trip_and_damaged_entry_is_a_miss(tmp_path):
    cache = ReplyCache(tmp_path)
    key = request_key({"x": 1})
    assert cache.get(key) is None
    cache.put(key, {"content": "hello"})
    assert cache.get(key) == {"content": "hello"} and key in cache
    (tmp_path / key[:2] / f"{key}.json").write_text('{"content": "hel')
    assert cache.get(key) is None and key not in cache
    assert not list(tmp_path.rglob(".*"))  # no temp files left


def test_cost_and_budget_by_hand():
    assert cost_usd(1_000_000, 0, (2.5, 10.0)) == 2.5
    assert cost_usd(1000, 100, (2.5, 10.0)) == pytest.approx(0.0035)
    budget = Budget(max_requests=2)
    budget.reserve()
    budget.reserve()
    with pytest.raises(BudgetExceeded, match="max_requests=2"):
        budget.reserve()
    money = Budget(max_cost_usd=0.005)
    money.reserve()
    money.record(1000, 100, (2.5, 10.0))
    money.reserve()
    money.record(1000, 100, (2.5, 10.0))  # $0.007 spent now
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        money.reserve()


# ---- against the local server -------------------------------------------------------------


def test_replies_are_cached_so_a_second_run_sends_nothing(tmp_path):
    with FakeOpenAI() as server:
        first = client_for(server, tmp_path).map([job(i) for i in range(5)])
        assert len(server.requests) == 5
        assert all(isinstance(r, Reply) and not r.cached for r in first)
        assert server.requests[0]["auth"] == f"Bearer {KEY}"
        again = client_for(server, tmp_path)
        second = again.map([job(i) for i in range(5)])
        assert len(server.requests) == 5
        assert [r.value for r in second] == [r.value for r in first]
        assert again.budget.usage.cache_hits == 5 and again.budget.usage.requests == 0


def test_retry_after_is_honoured(tmp_path):
    with FakeOpenAI(script=lambda n, body: "429" if n == 0 else None, retry_after="1") as server:
        [reply] = client_for(server, tmp_path).map([job(0)])
        assert isinstance(reply, Reply)
        first, second = server.requests
        assert second["t"] - first["t"] >= 0.95


@pytest.mark.parametrize("fault", ["429", "500", "slow", "malformed", "drop", "not_json"])
def test_each_fault_once_is_recovered(tmp_path, fault):
    with FakeOpenAI(script=lambda n, body: fault if n == 0 else None, slow_s=1.0) as server:
        client = client_for(server, tmp_path)
        [reply] = client.map([job(0)])
        assert isinstance(reply, Reply), reply
        assert reply.value == {"characteristics": pytest.approx(reply.value["characteristics"])}
        assert len(server.requests) == 2


def test_persistent_refusals_are_reported_not_stored(tmp_path):
    with FakeOpenAI(script=lambda n, body: "refusal") as server:
        client = client_for(server, tmp_path, max_attempts=3)
        [result] = client.map([job(0)])
        assert isinstance(result, Failure) and "refusal" in result.reason
        assert len(server.requests) == 3 and client.budget.usage.retries == 2
        assert not list((tmp_path / "cache").rglob("*.json"))


def test_a_refused_key_stops_everything_with_the_fix(tmp_path):
    with FakeOpenAI(script=lambda n, body: "401") as server:
        with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
            client_for(server, tmp_path).map([job(i) for i in range(6)])
        assert len(server.requests) <= 4  # the requests already in flight, nothing after


def test_budget_stops_cleanly_and_the_rest_is_sent_next_time(tmp_path):
    with FakeOpenAI() as server:
        limited = client_for(server, tmp_path, max_requests=3, concurrency=1)
        with pytest.raises(BudgetExceeded, match=r"3 of 8 requests are done and cached"):
            limited.map([job(i) for i in range(8)])
        assert len(server.requests) == 3
        results = client_for(server, tmp_path).map([job(i) for i in range(8)])
        assert all(isinstance(r, Reply) for r in results)
        assert len(server.requests) == 8  # the 3 paid replies came from the cache


def test_cost_budget_counts_the_server_usage(tmp_path):
    with FakeOpenAI() as server:
        client = client_for(server, tmp_path, max_cost_usd=0.01, concurrency=1)
        with pytest.raises(BudgetExceeded, match=r"max_cost_usd=0\.01"):
            client.map([job(i) for i in range(10)])
        # each reply costs 1000 * 2.5e-6 + 100 * 1e-5 = $0.0035: the 3rd crosses $0.01
        assert len(server.requests) == 3
        assert client.budget.usage.cost_usd == pytest.approx(0.0105)


def test_a_deadline_stops_a_slow_endpoint_with_what_is_cached(tmp_path):
    """Issue #27: a hanging endpoint took about 94 minutes to fail with the defaults. With
    ``deadline_s`` nothing new is sent once it has passed; the replies so far are cached, and
    a second run asks only for the rest."""
    import time

    from emit_iad.llm_api import DeadlineExceeded

    with FakeOpenAI(script=lambda n, body: "slow", slow_s=0.4) as server:
        client = client_for(server, tmp_path, concurrency=1, timeout_s=5.0, deadline_s=1.0)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"deadline_s=1.0 passed: (\d) of 10 requests "
                                                    r"are done and cached.*Run the stage again"):
            client.map([job(i) for i in range(10)])
        assert time.monotonic() - start < 3.0  # the deadline plus one reply in flight
        asked = len(server.requests)
        assert 1 <= asked <= 4
        again = client_for(server, tmp_path, concurrency=4, timeout_s=5.0)
        assert all(isinstance(r, Reply) for r in again.map([job(i) for i in range(10)]))
        assert len(server.requests) - asked == 10 - asked  # the cached ones are not asked again


def test_a_401_that_echoes_the_key_never_shows_it(tmp_path, caplog):
    """Issue #27: a proxy's 401 body with the whole key went into the error (logs, MLflow)."""
    with FakeOpenAI(script=lambda n, body: "401_echo") as server, \
            pytest.raises(LLMConfigError) as info:
        client_for(server, tmp_path).map([job(0)])
    assert KEY not in str(info.value) and "redacted" in str(info.value)
    assert KEY not in caplog.text
