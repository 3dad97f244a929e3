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
