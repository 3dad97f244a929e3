"""Faults that must end a run cleanly: unrenderable prompts, budgets with calls in flight."""

from __future__ import annotations

import asyncio

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.governor import worst_case_usd
from hct_cli.engine.perform import Performer, perform
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(60)


def fast(**extra: object) -> dict[str, object]:
    return {"prompt": "p", "simulate": {"latency_ms": 1}, **extra}


def test_a_prompt_that_cannot_render_fails_its_station_and_the_run_ends() -> None:
    program = program_of(
        {
            "a": fast(simulate={"latency_ms": 1, "output": "plain text"}),
            "b": fast(prompt="{{ cues.a.field }}", cues=["a"]),
            "c": fast(cues=["b"]),
            "d": fast(),
        }
    )
    result = asyncio.run(asyncio.wait_for(perform(program, Hands(lambda spec: SimulatedProvider(0))), 10))
    assert result.status == "failed"
    assert result.agents["b"].status == "failed"
    assert "could not be rendered" in (result.agents["b"].error or "")
    assert (result.agents["c"].status, result.agents["d"].status) == ("skipped", "done")


@pytest.mark.parametrize("dispatch", ["reactive", "batch", "sequential"])
def test_a_budget_waits_for_calls_in_flight_before_it_stops(dispatch: str) -> None:
    """Two calls whose worst cases do not both fit: the second waits for the first to settle."""
    agents = {
        name: fast(model="claude-sonnet-4-5", max_tokens=4000, simulate={"latency_ms": 2, "output_tokens": 50})
        for name in ("a", "b")
    }
    budget = 1.5 * worst_case_usd("claude-sonnet-4-5", 1, 4000)
    performer = Performer(
        program_of(agents),
        Hands(lambda spec: SimulatedProvider(0)),
        options=EngineOptions(dispatch=dispatch, budget_usd=budget),
    )
    result = asyncio.run(asyncio.wait_for(performer.run(), 10))
    assert result.status == "completed", "the outcome must not depend on the dispatch policy"
    assert result.cost_usd <= budget


def test_frontier_cost_counts_every_call_of_an_agent_that_ends_without_a_result() -> None:
    program = program_of({"a": fast(vamp={"max": 3, "until": {"contains": "NEVER"}})})

    class FailSecond:
        async def call(self, request: CallRequest) -> CallResult:
            if request.version == 2:
                raise RuntimeError("boom")
            return await SimulatedProvider(0).call(request)

    result = asyncio.run(perform(program, Hands(lambda spec: FailSecond())))
    record = result.agents["a"]
    assert record.status == "failed" and record.calls == 1
    assert record.cost_usd > 0 and record.frontier_cost_usd > record.cost_usd
    assert result.frontier_cost_usd == pytest.approx(record.frontier_cost_usd)
