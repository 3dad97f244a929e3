"""The Redis bus's own mechanics, against a private redis-server: batching, attacca routing,
reclaiming, the per-worker limit, and leaving a crashed conductor's run."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from hct_cli.distributed.conductor import ConductorBus
from hct_cli.distributed.keys import GROUP, work_stream
from hct_cli.distributed.queue import RedisWorkQueue

pytestmark = pytest.mark.timeout(60)


def run_id() -> str:
    return uuid.uuid4().hex[:12]


def test_cancelling_one_call_does_not_cancel_the_others_issued_with_it(redis_server: Any) -> None:
    """Issues of one loop turn share a pipeline; a squashed call's cancellation stays its own."""

    async def scenario() -> tuple[bool, int]:
        bus = await ConductorBus.open(redis_server.url, run_id(), ["mid"])
        try:

            async def send(payload: str) -> None:
                await bus.issue(payload, "mid")

            first = asyncio.create_task(send("a"))
            second = asyncio.create_task(send("b"))
            await asyncio.sleep(0)  # both have queued their command in the same turn
            first.cancel()
            await second  # must not raise CancelledError
            client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
            length = await client.xlen(work_stream(bus.run_id, "mid"))
            await client.aclose()
            return first.cancelled(), length
        finally:
            await bus.close()

    cancelled, length = asyncio.run(scenario())
    assert cancelled
    assert length == 2  # both items reached the stream all the same


def test_an_attacca_item_for_a_worker_that_never_joined_goes_to_its_tier(redis_server: Any) -> None:
    async def scenario() -> tuple[int, bool]:
        run = run_id()
        bus = await ConductorBus.open(redis_server.url, run, ["mid"])
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            await bus.issue("x", "mid", affinity="ghost-1")  # e.g. a worker named in a journaled result
            return await client.xlen(work_stream(run, "mid")), bool(
                await client.exists(f"hct:run:{run}:direct:ghost-1")
            )
        finally:
            await bus.close()
            await client.aclose()

    on_tier, direct_exists = asyncio.run(scenario())
    assert on_tier == 1
    assert not direct_exists


def test_an_attacca_item_for_a_joined_worker_goes_to_its_own_stream(redis_server: Any) -> None:
    async def scenario() -> tuple[str, list[str]]:
        run = run_id()
        bus = await ConductorBus.open(redis_server.url, run, ["mid"])
        queue = await RedisWorkQueue.open(redis_server.url, "w1")
        try:
            await queue.refresh()
            await bus.issue("x", "mid", affinity="w1")
            return run, [d.stream for d in await queue.take(5, 100)]
        finally:
            await bus.close()
            await queue.close()

    run, streams = asyncio.run(scenario())
    assert streams == [f"hct:run:{run}:direct:w1"]


def test_reclaim_finds_a_dead_workers_entries_behind_a_live_workers(redis_server: Any) -> None:
    """XAUTOCLAIM scans a bounded part of the pending list per call: the reclaimer follows its
    cursor, so entries of a dead worker queued behind many live ones are still taken."""

    async def scenario() -> tuple[list[str], set[str]]:
        run = run_id()
        bus = await ConductorBus.open(redis_server.url, run, ["mid"])
        live = await RedisWorkQueue.open(redis_server.url, "live", claim_after_s=0.3)
        dead = await RedisWorkQueue.open(redis_server.url, "dead", claim_after_s=0.3)
        rescuer = await RedisWorkQueue.open(redis_server.url, "rescuer", claim_after_s=0.3)
        try:
            for i in range(25):
                await bus.issue(f"item{i}", "mid")
            for queue in (live, dead, rescuer):
                await queue.refresh()
            held = await live.take(20, 100)
            lost = await dead.take(5, 100)
            assert len(held) == 20 and len(lost) == 5
            await asyncio.sleep(0.5)  # everything is idle past claim_after now...
            await live.beat({}, held)  # ...but the live worker's beat makes its own entries fresh
            taken = await rescuer.reclaim(1)
            return [d.reclaimed_from or "" for d in taken], {d.entry for d in lost}
        finally:
            await bus.close()
            for queue in (live, dead, rescuer):
                await queue.close()

    owners, _lost = asyncio.run(scenario())
    assert owners == ["dead"]


def test_a_worker_never_takes_more_than_its_free_slots(redis_server: Any) -> None:
    """XREADGROUP's COUNT is per stream: across several streams the excess is put back."""

    async def scenario() -> tuple[int, int]:
        runs = [run_id() for _ in range(3)]
        buses = [await ConductorBus.open(redis_server.url, run, ["mid"]) for run in runs]
        queue = await RedisWorkQueue.open(redis_server.url, "w")
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            for bus in buses:
                for i in range(3):
                    await bus.issue(f"{bus.run_id}-{i}", "mid")
            await queue.refresh()
            taken = await queue.take(2, 100)
            pending = 0
            for run in runs:
                summary = await client.xpending(work_stream(run, "mid"), GROUP)
                pending += int(summary["pending"])
            return len(taken), pending
        finally:
            for bus in buses:
                await bus.close()
            await queue.close()
            await client.aclose()

    taken, pending = asyncio.run(scenario())
    assert taken == 2
    assert pending == 2  # what it took and nothing more is held under its name


def test_workers_leave_a_run_whose_conductor_is_gone(redis_server: Any) -> None:
    async def scenario() -> tuple[tuple[str, ...], bool]:
        run = run_id()
        bus = await ConductorBus.open(redis_server.url, run, ["mid"])
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        queue = await RedisWorkQueue.open(redis_server.url, "w")
        try:
            await client.delete(f"hct:run:{run}:alive")  # as if the conductor had died 30 s ago
            await queue.refresh()
            return queue.runs, bool(await client.sismember("hct:runs", run))
        finally:
            await bus.close()
            await queue.close()
            await client.aclose()

    runs, listed = asyncio.run(scenario())
    assert runs == ()
    assert not listed


def test_a_call_that_every_worker_dies_making_fails_instead_of_going_round(redis_server: Any) -> None:
    """Past ``max_deliveries`` a reclaimed call is answered with a failure, not made again."""
    from hct_cli.bus.base import Broadcast
    from hct_cli.bus.wire import Result
    from hct_cli.distributed.work import Mode, encode_work
    from hct_cli.distributed.worker import Worker
    from hct_cli.providers.base import CallRequest
    from hct_cli.score.model import Agent

    async def scenario() -> tuple[list[Result], int]:
        run = run_id()
        bus = await ConductorBus.open(redis_server.url, run, ["mid"])
        heard: list[Result] = []
        bus.listen(heard.append)
        dead = await RedisWorkQueue.open(redis_server.url, "dead", claim_after_s=0.3)
        client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
        rescuer = await RedisWorkQueue.open(redis_server.url, "rescuer", claim_after_s=0.3)
        stop = asyncio.Event()
        try:
            request = CallRequest(Agent(name="crashy", index=0), "gpt-4o-mini", "mid", "p", version=1)
            await bus.issue(encode_work(run, request, Mode("simulated", 0, 0.01)), "mid")
            await dead.refresh()
            [taken] = await dead.take(1, 100)
            # Three workers already died making it (the delivery count says so).
            await client.xclaim(taken.stream, GROUP, "dead", 0, [taken.entry], retrycount=3, justid=True)
            worker = Worker(rescuer, concurrency=1, heartbeat_s=0.1, max_deliveries=3)
            serving = asyncio.create_task(worker.run(stop))
            for _ in range(500):
                if heard:
                    break
                await asyncio.sleep(0.01)
            stop.set()
            report = await serving
            return heard, report.reclaimed
        finally:
            stop.set()
            await bus.close()
            await client.aclose()
            for queue in (dead, rescuer):
                await queue.close()

    heard, reclaimed = asyncio.run(scenario())
    results = [r.message for r in heard if r.message is not None]
    assert reclaimed == 1
    assert len(results) == 1
    message: Broadcast = results[0]
    assert not message.ok and "given up" in (message.error or "")
