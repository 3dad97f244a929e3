"""The contract every common data bus keeps, run against each implementation.

Add a backend by adding a parameter to :func:`bus_factory`: a coroutine function that returns
a fresh, connected bus. The Redis bus runs against a private ``redis-server`` (the
``redis_server`` fixture). Delivery may be asynchronous (a Redis stream), so tests wait for
messages by yielding to the loop, never by measuring time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from hct_cli.bus.base import Broadcast, Bus
from hct_cli.bus.memory import MemoryBus
from hct_cli.call_result import CallResult
from hct_cli.engine import Hands, perform
from hct_cli.program.compile import compile_score
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import build_score

pytestmark = pytest.mark.timeout(60)

BusFactory = Callable[[], Awaitable[Bus]]


async def _memory() -> Bus:
    return MemoryBus()


@pytest.fixture(params=["memory", "redis"])
def bus_factory(request: pytest.FixtureRequest) -> BusFactory:
    if request.param == "memory":
        return _memory
    server = request.getfixturevalue("redis_server")  # a real redis-server of this test's own

    async def _redis() -> Bus:
        from hct_cli.bus.redis import RedisBus

        return await RedisBus.open(server.url, uuid.uuid4().hex[:12])

    return _redis


async def delivered(received: list[Broadcast], count: int, rounds: int = 5000) -> None:
    """Wait until ``received`` holds ``count`` messages (bounded loop turns, not seconds)."""
    for _ in range(rounds):
        if len(received) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(received)} of {count} messages delivered")


async def quiet(rounds: int = 200) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def message(station: str, version: int = 1) -> Broadcast:
    return Broadcast(station, version, True, CallResult(f"{station}@{version}", None))


def test_every_subscriber_receives_every_message_in_order(bus_factory: BusFactory) -> None:
    sent = [message(f"s{i % 4}", 1 + i // 4) for i in range(40)]

    async def scenario() -> tuple[list[Broadcast], list[Broadcast]]:
        bus = await bus_factory()
        first: list[Broadcast] = []
        second: list[Broadcast] = []
        bus.subscribe(first.append)
        bus.subscribe(second.append)
        for m in sent:
            await bus.publish(m)
        await delivered(first, len(sent))
        await delivered(second, len(sent))
        await quiet()
        await bus.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert first == sent
    assert second == sent


def test_messages_arrive_intact(bus_factory: BusFactory) -> None:
    original = Broadcast(
        "review",
        3,
        True,
        CallResult(
            {"findings": ["a", "b"], "score": 0.5},
            "gpt-4o-mini",
            prompt_tokens=120,
            completion_tokens=45,
            cost_usd=0.000045,
            latency_s=1.25,
            tier="mid",
            worker="w1",
        ),
    )
    failure = Broadcast("parse", 1, False, error="the model refused")

    async def scenario() -> list[Broadcast]:
        bus = await bus_factory()
        received: list[Broadcast] = []
        bus.subscribe(received.append)
        await bus.publish(original)
        await bus.publish(failure)
        await delivered(received, 2)
        await bus.close()
        return received

    received = asyncio.run(scenario())
    assert received == [original, failure]
    assert [m.tag for m in received] == ["review@3", "parse@1"]
    assert received[1].ok is False and received[1].error == "the model refused"


def test_a_subscriber_hears_only_what_is_published_after_it_subscribed(bus_factory: BusFactory) -> None:
    async def scenario() -> tuple[list[Broadcast], list[Broadcast]]:
        bus = await bus_factory()
        early: list[Broadcast] = []
        late: list[Broadcast] = []
        bus.subscribe(early.append)
        await bus.publish(message("before"))
        await delivered(early, 1)
        bus.subscribe(late.append)
        await bus.publish(message("after"))
        await delivered(early, 2)
        await delivered(late, 1)
        await quiet()
        await bus.close()
        return early, late

    early, late = asyncio.run(scenario())
    assert [m.station for m in early] == ["before", "after"]
    assert [m.station for m in late] == ["after"]


def test_concurrent_publishers_lose_nothing_and_keep_their_own_order(bus_factory: BusFactory) -> None:
    async def scenario() -> list[Broadcast]:
        bus = await bus_factory()
        received: list[Broadcast] = []
        bus.subscribe(received.append)

        async def publisher(station: str) -> None:
            for version in range(1, 21):
                await bus.publish(message(station, version))
                await asyncio.sleep(0)

        await asyncio.gather(*(publisher(f"p{i}") for i in range(5)))
        await delivered(received, 100)
        await quiet()
        await bus.close()
        return received

    received = asyncio.run(scenario())
    assert len(received) == 100
    assert len({m.tag for m in received}) == 100
    for i in range(5):
        assert [m.version for m in received if m.station == f"p{i}"] == list(range(1, 21))


def test_close_stops_delivery(bus_factory: BusFactory) -> None:
    async def scenario() -> list[Broadcast]:
        bus = await bus_factory()
        received: list[Broadcast] = []
        bus.subscribe(received.append)
        await bus.publish(message("kept"))
        await delivered(received, 1)
        await bus.close()
        await bus.publish(message("dropped"))  # must not raise, must not deliver
        await quiet()
        return received

    received = asyncio.run(scenario())
    assert [m.station for m in received] == ["kept"]


def test_a_run_completes_over_the_bus(bus_factory: BusFactory) -> None:
    """The scheduler learns results only from the bus, so any conforming bus can carry a run."""
    score = build_score(
        {
            "hct": 1,
            "name": "t",
            "agents": {
                "a": {"prompt": "a", "simulate": {"latency_ms": [0, 2]}},
                "b": {"prompt": "{{ cues.a }}", "cues": ["a"], "simulate": {"latency_ms": [0, 2]}},
                "c": {"prompt": "{{ cues.a }}", "cues": ["a"], "simulate": {"latency_ms": [0, 2]}},
            },
        }
    )

    async def scenario() -> tuple[str, list[str]]:
        bus = await bus_factory()
        heard: list[Broadcast] = []
        bus.subscribe(heard.append)
        result = await perform(compile_score(score), Hands(lambda spec: SimulatedProvider(0)), bus=bus)
        await bus.close()
        return result.status, sorted(m.tag for m in heard)

    status, tags = asyncio.run(scenario())
    assert status == "completed"
    assert tags == ["a@1", "b@1", "c@1"]
