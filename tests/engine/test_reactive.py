"""Reactive dispatch (Tomasulo): a station fires exactly when its last operand is broadcast.

Every test drives a fake provider whose calls block on an :class:`asyncio.Event` per agent, so
the test decides the order in which results arrive and checks what the scheduler did in
between. Nothing here measures time: only orderings and causality.
"""

from __future__ import annotations

import asyncio

import pytest

from hct_cli.bus.base import Broadcast, Handler
from hct_cli.engine import Hands, RunResult, perform
from hct_cli.events import Event
from tests.engine.fakes import GatedProvider, index_of, program_of, seen, settle, station_of, until

pytestmark = pytest.mark.timeout(60)


class HeldBus:
    """A bus that keeps every broadcast until the test delivers it."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.pending: list[Broadcast] = []
        self.closed = False

    def subscribe(self, handler: Handler) -> None:
        self.handlers.append(handler)

    async def publish(self, message: Broadcast) -> None:
        if not self.closed:
            self.pending.append(message)

    def deliver(self) -> None:
        pending, self.pending = self.pending, []
        for message in pending:
            for handler in self.handlers:
                handler(message)

    async def close(self) -> None:
        self.closed = True
        self.handlers.clear()


JOIN = {
    "a": {"prompt": "a"},
    "b": {"prompt": "b"},
    "d": {"prompt": "unrelated and slow"},
    "c": {"prompt": "join {{ cues.a }} and {{ cues.b }}", "cues": ["a", "b"]},
}


def test_station_waits_for_last_operand_and_fires_on_it() -> None:
    program = program_of(JOIN)
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        task = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        await until(lambda: set(provider.started) == {"a", "b", "d"}, "roots issued")
        assert "c" not in provider.started

        provider.open("a")
        await until(lambda: seen(events, "cue", "a"), "a committed")
        await settle()
        assert "c" not in provider.started, "c fired with only one of its two operands"
        assert not seen(events, "ready", "c")
        assert not seen(events, "issue", "c")

        provider.open("b")
        await until(lambda: "c" in provider.started, "c started")
        # c started while the unrelated d was still in flight: nothing but its operands held it.
        assert provider.in_flight_at_start["c"] == frozenset({"d"})
        assert provider.finished_at_start["c"] == ("a", "b")
        assert "d" not in provider.finished

        provider.open("c", "d")
        return await task

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert all(record.status == "done" for record in result.agents.values())

    # The run's signals: c's readiness and issue follow b's cue directly, with nothing between.
    flow = [(e.kind, e.station) for e in events if e.kind in ("issue", "cue", "ready")]
    roots = [step for step in flow if step[0] == "issue"][:3]
    assert set(roots) == {("issue", "a"), ("issue", "b"), ("issue", "d")}
    assert {step for step in flow[:6] if step[0] == "ready"} == {("ready", "a"), ("ready", "b"), ("ready", "d")}
    cue_b = flow.index(("cue", "b"))
    assert flow[cue_b + 1 : cue_b + 3] == [("ready", "c"), ("issue", "c")]
    assert flow.index(("cue", "a")) < cue_b
    assert flow.index(("issue", "c")) < flow.index(("cue", "d"))

    # c saw both operands, as captured from the bus, and rendered them into its prompt.
    request = provider.requests["c"]
    assert dict(request.context["cues"]) == {"a": "<a>", "b": "<b>"}
    assert request.prompt == "join <a> and <b>"
    assert result.agents["c"].operands == {"a": 1, "b": 1}


def test_operand_order_does_not_matter() -> None:
    """Whichever operand comes last is the one that fires the station."""
    program = program_of(JOIN)
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        task = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        await until(lambda: len(provider.started) == 3, "roots issued")
        provider.open("b")
        await until(lambda: seen(events, "cue", "b"), "b committed")
        await settle()
        assert "c" not in provider.started
        provider.open("a")
        await until(lambda: "c" in provider.started, "c started")
        assert provider.in_flight_at_start["c"] == frozenset({"d"})
        provider.open("c", "d")
        return await task

    result = asyncio.run(scenario())
    assert result.status == "completed"
    cue_a = index_of(events, "cue", "a")
    assert (events[cue_a + 1].kind, events[cue_a + 1].station) == ("ready", "c")
    assert (events[cue_a + 2].kind, events[cue_a + 2].station) == ("issue", "c")


def test_chain_fires_step_by_step() -> None:
    """a -> b -> c: each link starts only after the previous one's cue, and right after it."""
    program = program_of(
        {
            "a": {"prompt": "a"},
            "b": {"prompt": "{{ cues.a }}", "cues": ["a"]},
            "c": {"prompt": "{{ cues.b }}", "cues": ["b"]},
            "slow": {"prompt": "slow"},
        }
    )
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        task = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        await until(lambda: set(provider.started) == {"a", "slow"}, "roots issued")
        for link, successor in (("a", "b"), ("b", "c")):
            await settle()
            assert successor not in provider.started
            provider.open(link)
            await until(provider.has_started(successor), f"{successor} started")
            assert "slow" in provider.in_flight_at_start[successor]
        provider.open("c", "slow")
        return await task

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert provider.requests["c"].prompt == "<b>"
    assert result.agents["b"].operands == {"a": 1}
    assert result.agents["c"].operands == {"b": 1}


def test_results_reach_the_scheduler_only_through_the_bus() -> None:
    """A provider having returned is not enough: the dependent fires when the bus delivers."""
    program = program_of({"a": {"prompt": "a"}, "b": {"prompt": "{{ cues.a }}", "cues": ["a"]}})
    provider = GatedProvider()
    bus = HeldBus()
    events: list[Event] = []

    async def scenario() -> RunResult:
        task = asyncio.create_task(perform(program, Hands(lambda spec: provider), bus=bus, observers=[events.append]))
        await until(lambda: provider.started == ["a"], "a issued")
        provider.open("a")
        await until(lambda: len(bus.pending) == 1, "a's result published")
        await settle()
        assert provider.finished == ["a"]
        assert not seen(events, "cue", "a"), "the scheduler committed a result the bus never delivered"
        assert "b" not in provider.started

        bus.deliver()
        await until(lambda: "b" in provider.started, "b started after delivery")
        provider.open("b")
        await until(lambda: len(bus.pending) == 1, "b's result published")
        assert not task.done()
        bus.deliver()
        return await task

    result = asyncio.run(scenario())
    assert result.status == "completed"
    assert [(e.kind, e.station) for e in events if e.kind == "cue"] == [("cue", "a"), ("cue", "b")]


def test_fan_out_releases_every_dependent_on_one_broadcast() -> None:
    program = program_of(
        {
            "root": {"prompt": "r"},
            "x": {"prompt": "{{ cues.root }}", "cues": ["root"]},
            "y": {"prompt": "{{ cues.root }}", "cues": ["root"]},
            "z": {"prompt": "{{ cues.root }}", "cues": ["root"]},
        }
    )
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> RunResult:
        task = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        await until(lambda: provider.started == ["root"], "root issued")
        provider.open("root")
        await until(lambda: set(provider.started) == {"root", "x", "y", "z"}, "fan-out issued")
        # All three were in flight together: none waited for another.
        last = provider.started[-1]
        assert provider.in_flight_at_start[last] == frozenset({"x", "y", "z"} - {last})
        provider.open("x", "y", "z")
        return await task

    result = asyncio.run(scenario())
    assert result.status == "completed"
    cue_root = index_of(events, "cue", "root")
    issued_next = [station_of(e) for e in events[cue_root + 1 :] if e.kind in ("issue", "cue")][:3]
    assert sorted(issued_next) == ["x", "y", "z"]
    assert all(events[cue_root + 1 + i].kind in ("ready", "issue") for i in range(6))
