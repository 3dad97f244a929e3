"""Distributed mode end to end on a real Redis: a conductor (RedisBus + RemoteProvider) and
in-process :class:`~hct_cli.distributed.worker.Worker`\\ s, each with its own client.

Every test has a private ``redis-server`` (the ``redis_server`` fixture). Waits are bounded
polling loops on a condition; timeouts only guard against hangs, nothing measures time.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from hct_cli.bus.redis import GROUP, RedisBus, RedisWorkQueue, work_stream
from hct_cli.compile import Program, compile_score
from hct_cli.distributed.remote import RemoteProvider
from hct_cli.distributed.work import Mode
from hct_cli.distributed.worker import Worker, WorkerReport
from hct_cli.engine import Event, Performer, RunResult
from hct_cli.errors import BusError
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score import load_score
from hct_cli.score.model import build_score

pytestmark = pytest.mark.timeout(60)

#: Only a guard against a hang: every wait below ends on a condition long before this.
HANG_S = 30.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def score_program(agents: dict[str, Any]) -> Program:
    return compile_score(build_score({"hct": 1, "name": "t", "agents": agents}))


async def until(condition: Callable[[], bool], what: str, timeout_s: float = HANG_S) -> None:
    """Poll ``condition`` until it holds (bounded: a hang guard, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Serving:
    """An in-process worker running on its own queue (its own Redis client)."""

    worker: Worker
    queue: RedisWorkQueue
    stop: asyncio.Event
    task: asyncio.Task[WorkerReport]
    log: list[str] = field(default_factory=list)

    async def stopped(self) -> WorkerReport:
        self.stop.set()
        return await asyncio.wait_for(self.task, HANG_S)

    def joined(self, run_id: str) -> bool:
        return run_id in self.queue.runs


@asynccontextmanager
async def serving(
    url: str,
    name: str,
    *,
    concurrency: int = 8,
    claim_after_s: float = 5.0,
    heartbeat_s: float = 1.0,
    drain_s: float = 30.0,
) -> AsyncIterator[Serving]:
    queue = await RedisWorkQueue.open(url, name, claim_after_s=claim_after_s)
    log: list[str] = []
    worker = Worker(queue, concurrency=concurrency, heartbeat_s=heartbeat_s, drain_s=drain_s, log=log.append)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(worker.run(stop))
    handle = Serving(worker, queue, stop, task, log)
    try:
        yield handle
    finally:
        try:
            if not task.done():
                await handle.stopped()
            else:
                await task  # surfaces a worker that died
        finally:
            await queue.close()


async def run_keys(url: str, run_id: str) -> tuple[list[str], bool]:
    """The keys of ``run_id`` left in Redis, and whether it is still in the set of runs."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        keys = sorted(await client.keys(f"hct:run:{run_id}*"))
        listed = bool(await client.sismember("hct:runs", run_id))
    finally:
        await client.aclose()
    return keys, listed


# -- 1. the same run, in process and over Redis ------------------------------------------------

SEED = 5
TIME_SCALE = 0.02
DIFF = "--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,3 @@\n def f(x):\n-    return x\n+    return x + 1\n"


def figures(result: RunResult) -> dict[str, tuple[Any, ...]]:
    """What must not depend on where the calls ran (latency and timing may)."""
    return {
        name: (r.status, r.version, r.output, r.model, r.tier, r.cost_usd, r.prompt_tokens, r.completion_tokens)
        for name, r in result.agents.items()
    }


def test_a_run_over_redis_matches_the_same_run_in_process(redis_server: Any, repo: Any) -> None:
    program = compile_score(load_score(repo / "scores" / "code-review.yaml"))
    inputs = {"diff": DIFF}
    run_id = new_run_id()

    async def remote() -> tuple[RunResult, RemoteProvider, WorkerReport, tuple[list[str], bool]]:
        bus = await RedisBus.open(redis_server.url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", SEED, TIME_SCALE), bus)
            async with serving(redis_server.url, "w-one") as serve:
                performer = Performer(program, lambda spec: provider, inputs=inputs, run_id=run_id)
                result = await asyncio.wait_for(performer.run(), HANG_S)
                report = await serve.stopped()
        finally:
            await bus.close()
        return result, provider, report, await run_keys(redis_server.url, run_id)

    async def local() -> RunResult:
        provider = SimulatedProvider(SEED, time_scale=TIME_SCALE)
        return await Performer(program, lambda spec: provider, inputs=inputs).run()

    result, provider, report, (keys, listed) = asyncio.run(remote())
    expected = asyncio.run(local())
    assert expected.status == "completed"
    assert result.status == "completed"
    assert figures(result) == figures(expected)
    assert result.cost_usd == pytest.approx(expected.cost_usd, rel=1e-12)
    assert result.cost_usd > 0
    assert {name: r.worker for name, r in result.agents.items()} == dict.fromkeys(program.stations, "w-one")
    assert report.completed == len(program.stations)
    assert (report.failed, report.reclaimed, report.handed_back, report.malformed) == (0, 0, 0, 0)
    assert report.runs == {run_id}
    assert provider.duplicates == 0
    assert keys == []
    assert not listed


# -- 2. two workers share a run ------------------------------------------------------------------


def test_two_workers_share_a_run_and_no_result_commits_twice(redis_server: Any) -> None:
    agents = {f"a{i:02d}": {"prompt": f"task {i}", "simulate": {"latency_ms": [20, 60]}} for i in range(20)}
    program = score_program(agents)
    run_id = new_run_id()

    async def scenario() -> tuple[RunResult, int, WorkerReport, WorkerReport]:
        bus = await RedisBus.open(redis_server.url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 1, 1.0), bus)
            async with (
                serving(redis_server.url, "w-a", concurrency=2) as a,
                serving(redis_server.url, "w-b", concurrency=2) as b,
            ):
                await until(lambda: a.joined(run_id) and b.joined(run_id), "both workers to join the run")
                performer = Performer(program, lambda spec: provider, run_id=run_id)
                result = await asyncio.wait_for(performer.run(), HANG_S)
                first, second = await a.stopped(), await b.stopped()
        finally:
            await bus.close()
        return result, provider.duplicates, first, second

    result, duplicates, first, second = asyncio.run(scenario())
    assert result.status == "completed"
    assert first.completed > 0
    assert second.completed > 0
    assert first.completed + second.completed == 20
    assert {r.worker for r in result.agents.values()} == {"w-a", "w-b"}
    assert sum(r.worker == "w-a" for r in result.agents.values()) == first.completed
    assert {r.version for r in result.agents.values()} == {1}
    assert {r.calls for r in result.agents.values()} == {1}
    assert duplicates == 0


# -- 3. a silent worker's call is taken over ------------------------------------------------------


def test_a_silent_workers_call_is_reclaimed_and_the_performer_hears_of_it(redis_server: Any) -> None:
    program = score_program(
        {
            "first": {"prompt": "p", "simulate": {"latency_ms": 20}},
            "second": {"prompt": "{{ cues.first }}", "cues": ["first"], "simulate": {"latency_ms": 20}},
        }
    )
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> tuple[RunResult, list[Event], WorkerReport, int, int]:
        events: list[Event] = []
        bus = await RedisBus.open(url, run_id, program.tiers)
        silent = await RedisWorkQueue.open(url, "silent", claim_after_s=1.0)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 2, 1.0), bus)
            performer = Performer(program, lambda spec: provider, run_id=run_id, observers=[events.append])
            await silent.refresh()
            await silent.beat({"in_flight": 0, "concurrency": 1}, ())
            running = asyncio.get_running_loop().create_task(performer.run())
            taken = []
            for _ in range(100):  # bounded: the first item is issued at once
                taken = await silent.take(1, 200)
                if taken:
                    break
            assert len(taken) == 1, "the silent worker never got the first call"
            # ...and now it never finishes it nor beats again.
            async with serving(url, "rescuer", claim_after_s=1.0, heartbeat_s=0.2) as rescuer:
                result = await asyncio.wait_for(running, HANG_S)
                report = await rescuer.stopped()
            client = aioredis.Redis.from_url(url, decode_responses=True)
            try:
                stream = taken[0].stream
                pending = (await client.xpending(stream, GROUP))["pending"]
            finally:
                await client.aclose()
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await silent.close()
            await bus.close()
        return result, events, report, provider.duplicates, pending

    result, events, report, duplicates, pending = asyncio.run(scenario())
    assert result.status == "completed"
    assert report.reclaimed >= 1
    assert result.agents["first"].worker == "rescuer"
    assert result.agents["second"].worker == "rescuer"
    assert {r.version for r in result.agents.values()} == {1}
    reclaims = [e for e in events if e.kind == "reclaim"]
    assert reclaims, f"no reclaim event among {sorted({e.kind for e in events})}"
    assert reclaims[0].station == "first"
    assert reclaims[0].version == 1
    assert reclaims[0].data["from"] == "silent"
    assert reclaims[0].data["by"] == "rescuer"
    assert duplicates == 0
    assert pending == 0


# -- 4. a stopping worker hands back what it cannot finish ---------------------------------------


def test_a_drained_worker_hands_back_its_call_and_another_worker_completes_it(redis_server: Any) -> None:
    program = score_program({"long": {"prompt": "p", "simulate": {"latency_ms": 1500}}})
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> tuple[RunResult, list[Event], WorkerReport, WorkerReport]:
        events: list[Event] = []
        bus = await RedisBus.open(url, run_id, program.tiers)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 3, 1.0), bus)
            performer = Performer(program, lambda spec: provider, run_id=run_id, observers=[events.append])
            async with serving(url, "leaver", concurrency=1, drain_s=0) as leaver:
                running = asyncio.get_running_loop().create_task(performer.run())
                await until(lambda: leaver.worker.status()["in_flight"] == 1, "the call to be in flight")
                left = await leaver.stopped()
            assert not running.done()
            async with serving(url, "finisher") as finisher:
                result = await asyncio.wait_for(running, HANG_S)
                finished = await finisher.stopped()
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await bus.close()
        return result, events, left, finished

    result, events, left, finished = asyncio.run(scenario())
    assert left.handed_back == 1
    assert left.completed == 0
    assert result.status == "completed"
    assert result.agents["long"].worker == "finisher"
    assert result.agents["long"].version == 1
    assert finished.completed == 1
    assert [e.data.get("by") for e in events if e.kind == "hand_back"] == ["leaver"]
