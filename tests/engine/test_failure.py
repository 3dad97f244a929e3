"""A provider failure fails its station, skips everything downstream of it, and leaves
independent branches alone; the run ends ``failed``."""

from __future__ import annotations

import asyncio

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands, perform
from hct_cli.events import Event
from hct_cli.providers.base import CallRequest, ProviderError
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(60)

POLICIES = ["reactive", "batch", "sequential"]


class Failing:
    """Raises for the named agents, answers the others from the simulated provider."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        self.inner = SimulatedProvider(0, time_scale=0.01)
        self.called: list[str] = []

    async def call(self, request: CallRequest) -> CallResult:
        name = request.agent.name
        self.called.append(name)
        await asyncio.sleep(0)
        if name in self.failures:
            raise self.failures[name]
        return await self.inner.call(request)


LATENCY = {"simulate": {"latency_ms": [0, 3]}}
SHAPE = {
    "bad": {"prompt": "bad", **LATENCY},
    "child": {"prompt": "{{ cues.bad }}", "cues": ["bad"], **LATENCY},
    "grandchild": {"prompt": "{{ cues.child }}", "cues": ["child"], **LATENCY},
    "ok": {"prompt": "ok", **LATENCY},
    "ok_child": {"prompt": "{{ cues.ok }}", "cues": ["ok"], **LATENCY},
    "join": {"prompt": "{{ cues.ok_child }} {{ cues.bad }}", "cues": ["ok_child", "bad"], **LATENCY},
}


@pytest.mark.parametrize("dispatch", POLICIES)
def test_failure_skips_dependents_and_spares_independent_branches(dispatch: str) -> None:
    program = program_of(SHAPE)
    provider = Failing({"bad": ProviderError("the model refused")})
    events: list[Event] = []
    result = asyncio.run(
        perform(
            program, Hands(lambda spec: provider), observers=[events.append], options=EngineOptions(dispatch=dispatch)
        )
    )

    assert result.status == "failed"
    agents = result.agents
    assert agents["bad"].status == "failed"
    assert agents["bad"].error == "the model refused"
    assert agents["bad"].output is None
    for name in ("child", "grandchild", "join"):
        assert agents[name].status == "skipped", name
        error = agents[name].error
        assert error is not None and "'bad'" in error
        assert agents[name].started_s is None
        assert name not in provider.called
    for name in ("ok", "ok_child"):
        assert agents[name].status == "done", name
        assert agents[name].output
    assert sorted(provider.called) == ["bad", "ok", "ok_child"]

    kinds = {(e.kind, e.station) for e in events}
    assert ("fail", "bad") in kinds
    assert {("skip", n) for n in ("child", "grandchild", "join")} <= kinds
    assert not any(e.kind == "cue" and e.station == "bad" for e in events)
    assert events[-1].kind == "run_end"
    assert events[-1].data["status"] == "failed"
    # The failed call cost nothing and is not counted.
    assert agents["bad"].cost_usd == 0.0
    assert result.cost_usd == pytest.approx(agents["ok"].cost_usd + agents["ok_child"].cost_usd)


def test_an_unexpected_exception_is_reported_with_its_type() -> None:
    program = program_of({"a": {"prompt": "a"}, "b": {"prompt": "{{ cues.a }}", "cues": ["a"]}})
    provider = Failing({"a": RuntimeError("kaboom")})
    result = asyncio.run(perform(program, Hands(lambda spec: provider)))
    assert result.status == "failed"
    assert result.agents["a"].error == "RuntimeError: kaboom"
    assert result.agents["b"].status == "skipped"


@pytest.mark.parametrize("dispatch", POLICIES)
def test_the_failed_unit_is_released(dispatch: str) -> None:
    """With one unit, a failure must free it, or the independent agents would wait forever."""
    program = program_of(
        {"bad": {"prompt": "b"}, "x": {"prompt": "x"}, "y": {"prompt": "y"}},
        routing={"tiers": {"mid": {"model": "gpt-4o-mini", "concurrency": 1}}},
    )
    provider = Failing({"bad": ProviderError("nope")})
    result = asyncio.run(perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch=dispatch)))
    assert result.status == "failed"
    assert provider.called == ["bad", "x", "y"]
    assert [result.agents[n].status for n in ("bad", "x", "y")] == ["failed", "done", "done"]


def test_every_root_failing_still_ends_the_run() -> None:
    program = program_of(
        {"a": {"prompt": "a"}, "b": {"prompt": "b"}, "c": {"prompt": "c", "cues": ["a", "b"]}},
    )
    provider = Failing({"a": ProviderError("a down"), "b": ProviderError("b down")})
    result = asyncio.run(perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch="batch")))
    assert result.status == "failed"
    assert [result.agents[n].status for n in "abc"] == ["failed", "failed", "skipped"]


class Answering:
    """Answers every call with ``output`` (data, as a python agent may return)."""

    def __init__(self, output: object) -> None:
        self.output = output

    async def call(self, request: CallRequest) -> CallResult:
        return CallResult(self.output, request.model)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_an_answer_holding_a_non_finite_number_fails_its_agent(number: float) -> None:
    program = program_of({"a": {"prompt": "a", "writes": ["x"]}}, state={"x": {"initial": 0}})
    result = asyncio.run(perform(program, Hands(lambda spec: Answering({"deep": [1, number]}))))
    record = result.agents["a"]
    assert record.status == "failed"
    assert record.error is not None and "deep[1]" in record.error and "finite" in record.error
    assert result.state == {"x": 0}


def test_an_answer_with_a_lone_surrogate_stays_text_that_can_be_written() -> None:
    # A provider's JSON may escape half a UTF-16 pair ("\ud800"); Python decodes it as it is.
    program = program_of({"a": {"prompt": "a"}, "b": {"prompt": "{{ cues.a }}", "cues": ["a"]}})
    provider = Answering("x\ud800y \ud83d\ude00")
    result = asyncio.run(perform(program, Hands(lambda spec: provider), options=EngineOptions(digests=True)))
    assert result.status == "completed", result.agents["b"].error
    assert result.agents["a"].output == "x\ufffdy \U0001f600"
    assert str(result.agents["a"].output).encode("utf-8")


def test_a_simulated_call_past_its_timeout_retries_falls_back_and_fails_as_a_real_one() -> None:
    program = program_of(
        {
            "slow": {"prompt": "slow", "timeout_s": 0.05, "simulate": {"latency_ms": 500}},
            "after": {"prompt": "{{ cues.slow }}", "cues": ["slow"]},
        }
    )
    events: list[Event] = []
    provider = SimulatedProvider(0, time_scale=0.001)
    result = asyncio.run(perform(program, Hands(lambda spec: provider), observers=[events.append]))
    assert result.status == "failed"
    slow = result.agents["slow"]
    assert slow.status == "failed" and slow.error is not None and "Timeout" in slow.error
    assert result.agents["after"].status == "skipped"
    kinds = [e.kind for e in events if e.station == "slow" and e.kind in ("retry", "fallback")]
    # Three retries on the routed tier and on each tier it falls back to, as litellm's calls do.
    assert kinds.count("fallback") >= 1
    assert kinds.count("retry") == 3 * (kinds.count("fallback") + 1), kinds
