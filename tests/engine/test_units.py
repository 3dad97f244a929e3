"""Functional units: a tier's concurrency limit is a structural hazard, and issue order under
scarcity is tempo first (presto before largo), then the longest remaining critical path."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands, RunResult, perform
from hct_cli.events import Event
from hct_cli.providers.base import CallRequest
from tests.engine.fakes import GatedProvider, program_of, settle, until

pytestmark = pytest.mark.timeout(60)


def mid_tier(concurrency: int) -> dict[str, Any]:
    return {"tiers": {"mid": {"model": "gpt-4o-mini", "concurrency": concurrency}}}


class Recorder:
    """Returns at once (after one loop turn) and records call order and peak concurrency."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.in_flight = 0
        self.peak = 0

    async def call(self, request: CallRequest) -> CallResult:
        self.order.append(request.agent.name)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)
            return CallResult(output=request.agent.name, model=request.model)
        finally:
            self.in_flight -= 1


def test_a_tier_never_has_more_calls_in_flight_than_its_units() -> None:
    names = [f"w{i}" for i in range(5)]
    program = program_of(
        {name: {"prompt": name, "tempo": "allegro", "dynamics": "mf"} for name in names},
        routing=mid_tier(2),
    )
    assert {spec.route.tier for spec in program.stations.values()} == {"mid"}
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        run = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        opened = 0
        while opened < len(names):
            expected = min(2, len(names) - opened)
            await until(provider.has_in_flight(expected), f"{expected} in flight")
            await settle()
            assert len(provider.in_flight) == expected, "a unit was over-subscribed"
            assert sum(1 for e in events if e.kind == "issue") == opened + expected
            provider.open(sorted(provider.in_flight)[0])
            opened += 1
        return await run

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert provider.peak == 2
    assert sorted(provider.started) == names
    assert all(r.tier == "mid" and r.model == "gpt-4o-mini" for r in result.agents.values())


@pytest.mark.parametrize("dispatch", ["reactive", "batch"])
def test_concurrency_limit_holds_with_a_fast_provider(dispatch: str) -> None:
    agents: dict[str, dict[str, object]] = {f"w{i}": {"prompt": "w", "tempo": "allegro"} for i in range(6)}
    agents["join"] = {"prompt": "j", "cues": list(agents), "tempo": "allegro"}
    program = program_of(agents, routing=mid_tier(2))
    provider = Recorder()
    result = asyncio.run(perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch=dispatch)))
    assert result.status == "completed"
    assert provider.peak == 2


def test_unlimited_tiers_run_everything_at_once() -> None:
    program = program_of({f"w{i}": {"prompt": "w", "tempo": "allegro"} for i in range(5)})
    provider = GatedProvider()

    async def scenario() -> RunResult:
        run = asyncio.create_task(perform(program, Hands(lambda spec: provider)))
        await until(lambda: len(provider.in_flight) == 5, "all five in flight")
        provider.open(*provider.started)
        return await run

    assert asyncio.run(scenario()).status == "completed"


def test_presto_is_issued_before_largo_when_units_are_scarce() -> None:
    agents = {
        "first": {"prompt": "takes the only unit", "tempo": "moderato"},
        "slow1": {"prompt": "s1", "tempo": "largo"},
        "slow2": {"prompt": "s2", "tempo": "largo"},
        "mid1": {"prompt": "m1", "tempo": "moderato"},
        "fast1": {"prompt": "f1", "tempo": "presto"},
        "fast2": {"prompt": "f2", "tempo": "presto"},
    }
    program = program_of(agents, routing=mid_tier(1))
    provider = Recorder()
    result = asyncio.run(perform(program, Hands(lambda spec: provider)))
    assert result.status == "completed"
    assert provider.peak == 1
    # Roots are released in issue order too: tempo first, then declaration order among equals.
    assert provider.order == ["fast1", "fast2", "first", "mid1", "slow1", "slow2"]


def test_longest_remaining_path_breaks_tempo_ties() -> None:
    agents = {
        "first": {"prompt": "takes the only unit"},
        "short": {"prompt": "a leaf"},
        "long": {"prompt": "heads a chain"},
        "long2": {"prompt": "{{ cues.long }}", "cues": ["long"]},
        "long3": {"prompt": "{{ cues.long2 }}", "cues": ["long2"]},
    }
    program = program_of(agents, routing=mid_tier(1))
    assert program.stations["long"].remaining_s > program.stations["short"].remaining_s
    provider = Recorder()
    result = asyncio.run(perform(program, Hands(lambda spec: provider)))
    assert result.status == "completed"
    assert provider.order.index("long") < provider.order.index("short")
    # long2 (two stations left) outranks first and short (one each) once it becomes ready;
    # equal paths go in declaration order.
    assert provider.order == ["long", "long2", "first", "short", "long3"]


def test_a_newly_ready_station_does_not_jump_the_queue() -> None:
    """A dependent released while higher-priority stations wait for a unit waits its turn."""
    agents = {
        "first": {"prompt": "f", "tempo": "presto"},
        "queued": {"prompt": "q", "tempo": "presto"},
        "late": {"prompt": "{{ cues.first }}", "cues": ["first"], "tempo": "largo"},
    }
    program = program_of(agents, routing=mid_tier(1))
    provider = Recorder()
    result = asyncio.run(perform(program, Hands(lambda spec: provider)))
    assert result.status == "completed"
    assert provider.order == ["first", "queued", "late"]
