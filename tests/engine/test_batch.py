"""Batch and sequential dispatch, against reactive on the same stations and providers.

Batch (supersteps): a station made ready during a superstep waits until every station of that
superstep has finished. Sequential: one call in flight at a time, in topological order.
"""

from __future__ import annotations

import asyncio

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import EngineOptions, Hands, Performer, RunResult, perform
from hct_cli.engine.dispatch import Batch
from hct_cli.events import Event
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import GatedProvider, program_of, seen, settle, until

pytestmark = pytest.mark.timeout(60)

# a -> x, and b (same superstep as a) is slow.
SHAPE = {
    "a": {"prompt": "a"},
    "b": {"prompt": "b, slow"},
    "x": {"prompt": "after {{ cues.a }}", "cues": ["a"]},
}


def test_batch_waits_for_the_whole_superstep() -> None:
    program = program_of(SHAPE)
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        run = asyncio.create_task(
            perform(
                program,
                Hands(lambda spec: provider),
                observers=[events.append],
                options=EngineOptions(dispatch="batch"),
            )
        )
        await until(lambda: set(provider.started) == {"a", "b"}, "first superstep issued")
        provider.open("a")
        await until(lambda: seen(events, "cue", "a"), "a committed")
        await settle()
        assert seen(events, "ready", "x"), "x has its operand"
        assert "x" not in provider.started, "batch issued x before its superstep (a, b) finished"
        assert not seen(events, "issue", "x")

        provider.open("b")
        await until(lambda: "x" in provider.started, "x issued in the next superstep")
        assert provider.finished_at_start["x"] == ("a", "b")
        assert provider.in_flight_at_start["x"] == frozenset()
        provider.open("x")
        return await run

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert result.dispatch == "batch"
    flow = [(e.kind, e.station) for e in events if e.kind in ("issue", "cue")]
    assert flow.index(("cue", "b")) < flow.index(("issue", "x"))


def test_reactive_does_not_wait_for_unrelated_work() -> None:
    program = program_of(SHAPE)
    provider = GatedProvider()

    async def scenario() -> RunResult:
        run = asyncio.create_task(
            perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch="reactive"))
        )
        await until(lambda: set(provider.started) == {"a", "b"}, "roots issued")
        provider.open("a")
        await until(lambda: "x" in provider.started, "x issued")
        assert provider.in_flight_at_start["x"] == frozenset({"b"})
        assert "b" not in provider.finished
        provider.open("b", "x")
        return await run

    result = asyncio.run(scenario())
    assert result.status == "completed"


def test_batch_counts_supersteps_by_depth() -> None:
    """a -> x -> z and b -> y: three supersteps, {a, b}, {x, y}, {z}."""
    program = program_of(
        {
            "a": {"prompt": "a"},
            "b": {"prompt": "b"},
            "x": {"prompt": "{{ cues.a }}", "cues": ["a"]},
            "y": {"prompt": "{{ cues.b }}", "cues": ["b"]},
            "z": {"prompt": "{{ cues.x }}", "cues": ["x"]},
        }
    )
    provider = GatedProvider()
    performer = Performer(program, Hands(lambda spec: provider), options=EngineOptions(dispatch="batch"))

    async def scenario() -> RunResult:
        run = asyncio.create_task(performer.run())
        await until(lambda: set(provider.started) == {"a", "b"}, "superstep 1")
        provider.open("b")
        await settle()
        assert "y" not in provider.started
        provider.open("a")
        await until(lambda: set(provider.started) == {"a", "b", "x", "y"}, "superstep 2")
        provider.open("x")
        await settle()
        assert "z" not in provider.started, "z issued while y (its superstep's partner) still ran"
        provider.open("y")
        await until(lambda: "z" in provider.started, "superstep 3")
        provider.open("z")
        return await run

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert isinstance(performer.policy, Batch)
    assert performer.policy.supersteps == 3


class CountingProvider:
    """Wraps the simulated provider and tracks how many calls are in flight at once."""

    def __init__(self, seed: int = 0) -> None:
        self.inner = SimulatedProvider(seed)
        self.in_flight = 0
        self.peak = 0
        self.order: list[str] = []

    async def call(self, request: CallRequest) -> CallResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.order.append(request.agent.name)
        try:
            return await self.inner.call(request)
        finally:
            self.in_flight -= 1


WIDE = {
    "r1": {"prompt": "r1", "simulate": {"latency_ms": [0, 3]}},
    "r2": {"prompt": "r2", "simulate": {"latency_ms": [0, 3]}},
    "r3": {"prompt": "r3", "simulate": {"latency_ms": [0, 3]}},
    "m1": {"prompt": "{{ cues.r1 }} {{ cues.r2 }}", "cues": ["r1", "r2"], "simulate": {"latency_ms": [0, 3]}},
    "m2": {"prompt": "{{ cues.r3 }}", "cues": ["r3"], "simulate": {"latency_ms": [0, 3]}},
    "end": {"prompt": "{{ cues.m1 }} {{ cues.m2 }}", "cues": ["m1", "m2"], "simulate": {"latency_ms": [0, 3]}},
}


def test_sequential_never_has_two_calls_in_flight() -> None:
    program = program_of(WIDE)
    provider = CountingProvider()
    events: list[Event] = []
    result = asyncio.run(
        perform(
            program,
            Hands(lambda spec: provider),
            observers=[events.append],
            options=EngineOptions(dispatch="sequential"),
        )
    )
    assert result.status == "completed"
    assert provider.peak == 1
    assert tuple(provider.order) == program.order
    # Every issue comes after the previous station's cue: the event log alternates.
    flow = [e.kind for e in events if e.kind in ("issue", "cue")]
    assert flow == ["issue", "cue"] * len(program.order)


def test_sequential_with_gates_holds_the_next_call() -> None:
    program = program_of(SHAPE)
    provider = GatedProvider()

    async def scenario() -> RunResult:
        run = asyncio.create_task(
            perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch="sequential"))
        )
        for name in program.order:
            await until(provider.has_started(name), f"{name} issued")
            await settle()
            assert len(provider.in_flight) == 1
            provider.open(name)
        return await run

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert provider.peak == 1
    assert tuple(provider.started) == program.order


@pytest.mark.parametrize("dispatch", ["reactive", "batch"])
def test_parallel_policies_overlap_independent_roots(dispatch: str) -> None:
    program = program_of(WIDE)
    provider = GatedProvider()

    async def scenario() -> RunResult:
        run = asyncio.create_task(
            perform(program, Hands(lambda spec: provider), options=EngineOptions(dispatch=dispatch))
        )
        await until(lambda: set(provider.started) == {"r1", "r2", "r3"}, "all roots in flight")
        assert provider.peak == 3
        for name in ("r1", "r2", "r3", "m1", "m2", "end"):
            await until(provider.has_started(name), f"{name} issued")
            provider.open(name)
        return await run

    assert asyncio.run(scenario()).status == "completed"
