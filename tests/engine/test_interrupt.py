"""Interrupting a run cancels the calls it has in flight, whatever the bus delivered before."""

from __future__ import annotations

import asyncio

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.bus.memory import MemoryBus
from hct_cli.call_result import CallResult
from hct_cli.engine import Hands, perform
from hct_cli.events import Event
from tests.engine.fakes import GatedProvider, program_of, settle, until

pytestmark = pytest.mark.timeout(60)

AGENTS = {
    "a": {"prompt": "a"},
    "b": {"prompt": "b"},
    "c": {"prompt": "{{ cues.a }} {{ cues.b }}", "cues": ["a", "b"]},
}


def test_cancelling_a_run_cancels_every_call_in_flight() -> None:
    program = program_of(AGENTS)
    provider = GatedProvider()
    events: list[Event] = []

    async def scenario() -> None:
        run = asyncio.create_task(perform(program, Hands(lambda spec: provider), observers=[events.append]))
        await until(lambda: set(provider.started) == {"a", "b"}, "roots in flight")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await settle()
        assert sorted(provider.cancelled) == ["a", "b"]
        assert provider.in_flight == set()

    asyncio.run(scenario())
    assert "c" not in provider.started
    assert not any(e.kind == "run_end" for e in events)


def test_cancelling_after_a_completed_call_cancels_only_the_rest() -> None:
    program = program_of(AGENTS)
    provider = GatedProvider()

    async def scenario() -> None:
        run = asyncio.create_task(perform(program, Hands(lambda spec: provider)))
        await until(lambda: set(provider.started) == {"a", "b"}, "roots in flight")
        provider.open("a")
        await until(lambda: provider.finished == ["a"], "a finished")
        await settle()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await settle()
        assert provider.cancelled == ["b"]
        assert provider.in_flight == set()

    asyncio.run(scenario())


def test_a_stale_broadcast_does_not_orphan_the_call_in_flight() -> None:
    program = program_of(AGENTS)
    provider = GatedProvider()
    bus = MemoryBus()

    async def scenario() -> None:
        run = asyncio.create_task(perform(program, Hands(lambda spec: provider), bus=bus))
        await until(lambda: set(provider.started) == {"a", "b"}, "roots in flight")
        await bus.publish(Broadcast("a", 0, True, CallResult("stale", None)))  # ignored, a@1 still runs
        await settle()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await settle()
        orphaned = sorted(provider.in_flight)
        provider.open("a", "b")  # let an orphan finish before asyncio.run tears the loop down
        await settle()
        assert orphaned == [], f"calls still running after the run was cancelled: {orphaned}"
        assert sorted(provider.cancelled) == ["a", "b"]

    asyncio.run(scenario())
