"""L5: the result cache, its key, the caching provider and the speculation predictors."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.providers.base import CallRequest
from hct_cli.score.model import Agent
from hct_cli.store.cache import Predictors, ResultCache, cache_key
from hct_cli.store.cached import CachingProvider
from hct_cli.store.home import connect

pytestmark = pytest.mark.timeout(60)


def _request(agent: str = "writer", **changes: Any) -> CallRequest:
    request = CallRequest(Agent(name=agent, index=0), "gpt-4o-mini", "fast", "Write one line.", system="Be brief.")
    for name, value in changes.items():
        setattr(request, name, value)
    return request


class FakeProvider:
    """Answers each call with a new output and a price, and remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: list[CallRequest] = []

    async def call(self, request: CallRequest) -> CallResult:
        self.requests.append(request)
        n = len(self.requests)
        return CallResult(
            {"answer": n, "agent": request.agent.name}, request.model, 100 + n, 20 + n, 0.5 * n, 1.5, tier="answered"
        )


def _call(provider: CachingProvider, request: CallRequest) -> CallResult:
    return asyncio.run(provider.call(request))


# -- cache_key -------------------------------------------------------------------------------


def test_cache_key_is_stable_and_depends_on_everything_asked() -> None:
    base = _request()
    key = cache_key("ns", base)
    assert key == cache_key("ns", _request())
    assert len(key) == 40 and int(key, 16) >= 0  # blake2b, 20 bytes, hex
    longer = _request()
    longer.agent = replace(base.agent, max_tokens=base.agent.max_tokens + 1)
    different = {
        "namespace": cache_key("other", base),
        "model": cache_key("ns", _request(model="gpt-4o")),
        "prompt": cache_key("ns", _request(prompt="Write two lines.")),
        "system": cache_key("ns", _request(system="Be verbose.")),
        "purpose": cache_key("ns", _request(purpose="judge")),
        "max_tokens": cache_key("ns", longer),
    }
    assert key not in different.values()
    assert len(set(different.values())) == len(different)


def test_cache_key_ignores_what_does_not_change_the_answer() -> None:
    key = cache_key("live", _request())
    assert cache_key("live", _request(agent="another")) == key  # the namespace carries the agent when it matters
    assert cache_key("live", _request(tier="frontier")) == key
    assert cache_key("live", _request(version=4, attempt=2, context={"x": 1})) == key


def test_cache_key_fields_do_not_run_into_each_other() -> None:
    one = _request(system="ab", prompt="c")
    two = _request(system="a", prompt="bc")
    assert cache_key("ns", one) != cache_key("ns", two)


# -- ResultCache -----------------------------------------------------------------------------


def test_result_cache_round_trips_at_zero_cost_and_counts_hits() -> None:
    cache = ResultCache(connect())
    assert cache.get("k") is None
    assert cache.hits == 0
    cache.put("k", CallResult({"list": [1, 2], "text": "é"}, "m", 11, 7, 0.42, 3.0, tier="fast"))
    hit = cache.get("k")
    assert hit is not None
    assert hit.output == {"list": [1, 2], "text": "é"}
    assert (hit.model, hit.prompt_tokens, hit.completion_tokens) == ("m", 11, 7)
    assert (hit.cost_usd, hit.latency_s, hit.cached) == (0.0, 0.0, True)
    assert cache.hits == 1
    # what was paid is kept in the database, and another process sees the entry
    row = connect().execute("SELECT cost_usd, model FROM cache WHERE key = 'k'").fetchone()
    assert row == (0.42, "m")
    assert ResultCache(connect()).get("k") is not None


def test_result_cache_put_replaces_an_entry() -> None:
    cache = ResultCache(connect())
    cache.put("k", CallResult("old", "m"))
    cache.put("k", CallResult("new", "m"))
    hit = cache.get("k")
    assert hit is not None and hit.output == "new"


# -- CachingProvider -------------------------------------------------------------------------


def test_a_repeated_call_is_served_from_the_cache() -> None:
    inner = FakeProvider()
    provider = CachingProvider(inner, ResultCache(connect()))
    first = _call(provider, _request())
    assert first.cached is False and first.cost_usd == 0.5 and first.tier == "answered"
    second = _call(provider, _request(tier="frontier"))
    assert len(inner.requests) == 1  # the second call never reached the model
    assert second.cached is True
    assert second.output == first.output
    assert (second.prompt_tokens, second.completion_tokens) == (first.prompt_tokens, first.completion_tokens)
    assert second.cost_usd == 0.0
    assert second.tier == "frontier"  # the tier that asked this time
    third = _call(provider, _request(prompt="Something else."))
    assert third.cached is False and len(inner.requests) == 2
    assert third.output == {"answer": 2, "agent": "writer"}


def test_live_calls_share_answers_across_agents_and_attempts() -> None:
    inner = FakeProvider()
    provider = CachingProvider(inner, ResultCache(connect()))
    _call(provider, _request("writer"))
    shared = _call(provider, _request("editor", attempt=3, version=2))
    assert shared.cached is True and len(inner.requests) == 1
    other_model = _call(provider, _request("editor", model="gpt-4o"))
    assert other_model.cached is False and len(inner.requests) == 2


def test_the_cache_outlives_the_provider_and_the_connection() -> None:
    inner = FakeProvider()
    _call(CachingProvider(inner, ResultCache(connect())), _request())
    again = _call(CachingProvider(FakeProvider(), ResultCache(connect())), _request())
    assert again.cached is True and again.output == {"answer": 1, "agent": "writer"}


@pytest.mark.parametrize(
    ("seed", "agent", "attempt", "hit"),
    [
        (1, "writer", 0, True),
        (2, "writer", 0, False),  # another seed draws another answer
        (1, "editor", 0, False),  # another agent too, even for the same messages
        (1, "writer", 1, False),  # and another attempt (a retry must not get the failed answer back)
    ],
)
def test_simulated_answers_are_separated_by_seed_agent_and_attempt(
    seed: int, agent: str, attempt: int, hit: bool
) -> None:
    cache = ResultCache(connect())
    inner = FakeProvider()
    _call(CachingProvider(inner, cache, simulated_seed=1), _request("writer", attempt=0))
    result = _call(CachingProvider(inner, cache, simulated_seed=seed), _request(agent, attempt=attempt))
    assert result.cached is hit
    assert len(inner.requests) == (1 if hit else 2)


def test_simulated_and_live_answers_never_mix() -> None:
    cache = ResultCache(connect())
    inner = FakeProvider()
    _call(CachingProvider(inner, cache, simulated_seed=0), _request())
    live = _call(CachingProvider(inner, cache), _request())
    assert live.cached is False and len(inner.requests) == 2


def test_a_failed_call_is_not_cached() -> None:
    from hct_cli.providers.base import ProviderError

    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        async def call(self, request: CallRequest) -> CallResult:
            self.calls += 1
            raise ProviderError("rate limited")

    cache = ResultCache(connect())
    failing = Failing()
    provider = CachingProvider(failing, cache)
    for _ in range(2):
        with pytest.raises(ProviderError):
            _call(provider, _request())
    assert failing.calls == 2
    assert connect().execute("SELECT COUNT(*) FROM cache").fetchone()[0] == 0


# -- Predictors ------------------------------------------------------------------------------


def test_a_new_gate_is_predicted_to_pass() -> None:
    predictors = Predictors()
    assert Predictors.INITIAL == 2
    assert predictors.predict("score/gate") is True
    assert predictors.counters == {}


def test_the_counter_saturates_at_zero_and_three() -> None:
    predictors = Predictors()
    rising = []
    for passed in (True, True, True):
        predictors.update("g", passed)
        rising.append(predictors.counters["g"])
    assert rising == [3, 3, 3]
    falling = []
    for _ in range(5):
        predictors.update("g", False)
        falling.append((predictors.counters["g"], predictors.predict("g")))
    assert falling == [(2, True), (1, False), (0, False), (0, False), (0, False)]
    predictors.update("g", True)
    assert (predictors.counters["g"], predictors.predict("g")) == (1, False)
    predictors.update("g", True)
    assert (predictors.counters["g"], predictors.predict("g")) == (2, True)


def test_two_bits_of_hysteresis_one_failure_does_not_flip_a_strong_pass() -> None:
    predictors = Predictors()
    predictors.update("g", True)  # 3: strongly passes
    predictors.update("g", False)  # 2: still predicted to pass
    assert predictors.predict("g") is True
    predictors.update("g", False)  # 1
    assert predictors.predict("g") is False


def test_gates_are_independent() -> None:
    predictors = Predictors()
    predictors.update("a", False)
    predictors.update("a", False)
    assert predictors.predict("a") is False
    assert predictors.predict("b") is True


def test_counters_persist_across_instances() -> None:
    first = Predictors(connect())
    first.update("review/security", False)
    first.update("review/security", False)  # 0
    first.update("review/docs", True)  # 3
    second = Predictors(connect())
    assert second.counters == {"review/security": 0, "review/docs": 3}
    assert second.predict("review/security") is False
    assert second.predict("review/docs") is True
    assert second.predict("review/unknown") is True
    second.update("review/security", True)
    assert Predictors(connect()).counters["review/security"] == 1


def test_predictors_without_a_database_keep_nothing() -> None:
    Predictors().update("g", False)
    Predictors().update("g", False)
    assert Predictors(connect()).counters == {}
