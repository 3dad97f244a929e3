"""Distributed mode end to end on a real Redis: a conductor (ConductorBus + RemoteProvider) and
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

from hct_cli.bus.base import Broadcast
from hct_cli.call_result import CallResult
from hct_cli.distributed.conductor import ConductorBus
from hct_cli.distributed.keys import GROUP, work_stream
from hct_cli.distributed.queue import RedisWorkQueue
from hct_cli.distributed.remote import RemoteProvider
from hct_cli.distributed.work import Mode
from hct_cli.distributed.worker import Worker, WorkerReport
from hct_cli.engine import EngineOptions, Hands, Performer, RunResult
from hct_cli.errors import BusError, UsageError
from hct_cli.events import Event
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score
from hct_cli.providers.simulated import SimulatedProvider
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
    tiers: list[str] | None = None,
) -> AsyncIterator[Serving]:
    queue = await RedisWorkQueue.open(url, name, tiers=tiers, claim_after_s=claim_after_s)
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
        keys = sorted(str(key) for key in await client.keys(f"hct:run:{run_id}*"))
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

    async def remote() -> tuple[RunResult, RemoteProvider, WorkerReport, list[tuple[list[str], bool]]]:
        bus = await ConductorBus.open(redis_server.url, run_id, program.tiers)
        leftovers = []
        try:
            provider = RemoteProvider(Mode("simulated", SEED, TIME_SCALE), bus)
            async with serving(redis_server.url, "w-one") as serve:
                await until(lambda: serve.joined(run_id), "the worker to join the run")
                assert (await run_keys(redis_server.url, run_id))[1], "the run is announced to workers"
                performer = Performer(
                    program, Hands(lambda spec: provider), inputs=inputs, options=EngineOptions(run_id=run_id)
                )
                result = await asyncio.wait_for(performer.run(), HANG_S)
                await bus.close()
                leftovers.append(await run_keys(redis_server.url, run_id))  # the worker still serving
                report = await serve.stopped()
            leftovers.append(await run_keys(redis_server.url, run_id))  # and once it has left
        finally:
            await bus.close()
        return result, provider, report, leftovers

    async def local() -> RunResult:
        provider = SimulatedProvider(SEED, time_scale=TIME_SCALE)
        return await Performer(program, Hands(lambda spec: provider), inputs=inputs).run()

    result, provider, report, leftovers = asyncio.run(remote())
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
    assert leftovers == [([], False), ([], False)]


# -- 2. two workers share a run ------------------------------------------------------------------


def test_two_workers_share_a_run_and_no_result_commits_twice(redis_server: Any) -> None:
    agents = {f"a{i:02d}": {"prompt": f"task {i}", "simulate": {"latency_ms": [20, 60]}} for i in range(20)}
    program = score_program(agents)
    run_id = new_run_id()

    async def scenario() -> tuple[RunResult, int, WorkerReport, WorkerReport]:
        bus = await ConductorBus.open(redis_server.url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 1, 1.0), bus)
            async with (
                serving(redis_server.url, "w-a", concurrency=2) as a,
                serving(redis_server.url, "w-b", concurrency=2) as b,
            ):
                await until(lambda: a.joined(run_id) and b.joined(run_id), "both workers to join the run")
                performer = Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id))
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
        bus = await ConductorBus.open(url, run_id, program.tiers)
        silent = await RedisWorkQueue.open(url, "silent", claim_after_s=1.0)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 2, 1.0), bus)
            performer = Performer(
                program, Hands(lambda spec: provider), observers=[events.append], options=EngineOptions(run_id=run_id)
            )
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
        bus = await ConductorBus.open(url, run_id, program.tiers)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 3, 1.0), bus)
            performer = Performer(
                program, Hands(lambda spec: provider), observers=[events.append], options=EngineOptions(run_id=run_id)
            )
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


# -- 5. a malformed work item ----------------------------------------------------------------------


async def pending_count(url: str, stream: str) -> int:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        count: int = (await client.xpending(stream, GROUP))["pending"]
    finally:
        await client.aclose()
    return count


async def xadd(url: str, stream: str, fields: dict[Any, Any]) -> None:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        await client.xadd(stream, fields)
    finally:
        await client.aclose()


async def until_pending(url: str, stream: str, count: int, timeout_s: float = HANG_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (found := await pending_count(url, stream)) != count:
        if loop.time() > deadline:
            raise AssertionError(f"{found} entries pending on {stream}, not {count}")
        await asyncio.sleep(0.02)


ONE_AGENT = {"only": {"prompt": "p", "simulate": {"latency_ms": 5}}}


def _malformed_item_scenario(url: str, payload: str, guard_s: float) -> tuple[WorkerReport, RunResult, list[str]]:
    program = score_program(ONE_AGENT)
    run_id = new_run_id()
    stream = work_stream(run_id, None)

    async def scenario() -> tuple[WorkerReport, RunResult, list[str]]:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 4, 1.0), bus)
            async with serving(url, "w-m") as serve:
                await until(lambda: serve.joined(run_id), "the worker to join the run")
                await xadd(url, stream, {"w": payload})
                await until(lambda: serve.worker.report.malformed == 1, "the item to be dropped", guard_s)
                await until_pending(url, stream, 0, guard_s)
                # The worker still serves: a real call after the bad one completes.
                performer = Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id))
                result = await asyncio.wait_for(performer.run(), HANG_S)
                report = await serve.stopped()
        finally:
            await bus.close()
        return report, result, serve.log

    return asyncio.run(scenario())


def test_a_malformed_work_item_is_dropped_and_acknowledged(redis_server: Any) -> None:
    report, result, log = _malformed_item_scenario(redis_server.url, "not json", HANG_S)
    assert report.malformed == 1
    assert report.completed == 1
    assert result.status == "completed"
    assert result.agents["only"].worker == "w-m"
    assert any("malformed" in line for line in log)


def test_a_work_item_of_the_wrong_types_is_dropped_too(redis_server: Any) -> None:
    payload = '{"run":"r","agent":{"name":"a","max_tokens":1},"model":"m","prompt":"p","version":1,"mode":[]}'
    report, _result, _log = _malformed_item_scenario(redis_server.url, payload, 1.0)
    assert report.malformed == 1


# -- 6. no Redis at all ----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens once the probe is closed


def test_opening_a_bus_where_nothing_listens_raises_a_bus_error() -> None:
    url = f"redis://127.0.0.1:{_closed_port()}/0"

    async def conductor() -> None:
        await ConductorBus.open(url, new_run_id(), (None,))

    async def worker() -> None:
        await RedisWorkQueue.open(url, "w-none")

    for opening in (conductor, worker):
        with pytest.raises(BusError) as caught:
            asyncio.run(opening())
        assert url in caught.value.message
        assert caught.value.hint.strip()


def test_opening_a_bus_with_a_url_that_is_not_redis_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        asyncio.run(ConductorBus.open("http://127.0.0.1:1/", new_run_id()))
    assert "http://127.0.0.1:1/" in caught.value.message
    assert caught.value.hint.strip()


# -- 7. Redis goes away mid-run --------------------------------------------------------------------


def test_losing_redis_mid_run_interrupts_the_run(redis_server: Any) -> None:
    program = score_program(
        {
            "slow": {"prompt": "p", "simulate": {"latency_ms": 20000}},
            "after": {"prompt": "{{ cues.slow }}", "cues": ["slow"], "simulate": {"latency_ms": 5}},
        }
    )
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> tuple[RunResult, Performer, ConductorBus, list[Event]]:
        events: list[Event] = []
        bus = await ConductorBus.open(url, run_id, program.tiers)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 6, 1.0), bus)
            performer = Performer(
                program, Hands(lambda spec: provider), observers=[events.append], options=EngineOptions(run_id=run_id)
            )
            async with serving(url, "w-lost", drain_s=0) as serve:
                running = asyncio.get_running_loop().create_task(performer.run())
                await until(lambda: serve.worker.status()["in_flight"] == 1, "the slow call to be in flight")
                redis_server.stop()
                result = await asyncio.wait_for(running, HANG_S)
                redis_server.start()  # back (empty) before the worker stops, so its drain has a server
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await bus.close()
        return result, performer, bus, events

    result, performer, bus, events = asyncio.run(scenario())
    assert result.status == "interrupted"
    assert performer.interruption is not None
    assert "Redis" in performer.interruption
    assert url in performer.interruption
    assert bus.lost is not None
    assert [e.kind for e in events if e.kind == "interrupt"] == ["interrupt"]
    assert result.agents["slow"].status != "done"
    assert result.agents["after"].status != "done"


# -- more of the contract ------------------------------------------------------------------------


def test_a_late_result_from_a_worker_thought_silent_never_commits(redis_server: Any) -> None:
    """The silent worker wakes up and finishes the call it lost: its result is a duplicate."""
    program = score_program(
        {
            "first": {"prompt": "p", "simulate": {"latency_ms": 20}},
            "second": {"prompt": "{{ cues.first }}", "cues": ["first"], "simulate": {"latency_ms": 200}},
        }
    )
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> tuple[RunResult, int]:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        silent = await RedisWorkQueue.open(url, "silent", claim_after_s=1.0)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 8, 1.0), bus)
            performer = Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id))
            await silent.refresh()
            await silent.beat({}, ())
            running = asyncio.get_running_loop().create_task(performer.run())
            taken = []
            for _ in range(100):
                taken = await silent.take(1, 200)
                if taken:
                    break
            assert len(taken) == 1, "the silent worker never got the first call"
            async with serving(url, "rescuer", claim_after_s=1.0, heartbeat_s=0.2) as rescuer:
                await until(lambda: performer.records["first"].status == "done", "the rescuer's result to commit")
                stale = Broadcast("first", 1, True, CallResult("stale", "gpt-4o-mini", cost_usd=1.0, worker="silent"))
                await silent.finish(taken[0], stale, [])
                await until(lambda: provider.duplicates == 1, "the late result to be heard")
                result = await asyncio.wait_for(running, HANG_S)
                await rescuer.stopped()
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await silent.close()
            await bus.close()
        return result, provider.duplicates

    result, duplicates = asyncio.run(scenario())
    assert duplicates == 1
    assert result.status == "completed"
    first = result.agents["first"]
    assert first.worker == "rescuer"
    assert first.output != "stale"
    assert (first.version, first.calls) == (1, 1)
    assert result.cost_usd < 1.0  # the stale call's figures were not booked


def test_a_worker_takes_only_the_tiers_it_serves(redis_server: Any) -> None:
    agents: dict[str, Any] = {}
    for i in range(4):
        agents[f"loud{i}"] = {"prompt": f"l{i}", "dynamics": "ff", "simulate": {"latency_ms": [5, 20]}}
        agents[f"soft{i}"] = {"prompt": f"s{i}", "dynamics": "mf", "simulate": {"latency_ms": [5, 20]}}
    program = score_program(agents)
    assert {program.stations[f"loud{i}"].route.tier for i in range(4)} == {"frontier"}
    assert {program.stations[f"soft{i}"].route.tier for i in range(4)} == {"mid"}
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> RunResult:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 9, 1.0), bus)
            async with (
                serving(url, "w-frontier", tiers=["frontier"]) as loud,
                serving(url, "w-mid", tiers=["mid"]) as soft,
            ):
                await until(lambda: loud.joined(run_id) and soft.joined(run_id), "both workers to join the run")
                result = await asyncio.wait_for(
                    Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id)).run(), HANG_S
                )
        finally:
            await bus.close()
        return result

    result = asyncio.run(scenario())
    assert result.status == "completed"
    for i in range(4):
        assert result.agents[f"loud{i}"].worker == "w-frontier"
        assert result.agents[f"soft{i}"].worker == "w-mid"


def test_an_attacca_hand_off_goes_to_the_worker_that_produced_the_cue(redis_server: Any) -> None:
    agents: dict[str, Any] = {}
    for i in range(6):
        agents[f"a{i}"] = {"prompt": f"a{i}", "simulate": {"latency_ms": [5, 30]}}
        agents[f"b{i}"] = {
            "prompt": f"{{{{ cues.a{i} }}}}",
            "cues": [f"a{i}"],
            "attacca": True,
            "simulate": {"latency_ms": 5},
        }
    program = score_program(agents)
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> RunResult:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 10, 1.0), bus)
            async with (
                serving(url, "w-x", concurrency=2, heartbeat_s=0.2) as x,
                serving(url, "w-y", concurrency=2, heartbeat_s=0.2) as y,
            ):
                await until(lambda: x.joined(run_id) and y.joined(run_id), "both workers to join the run")
                result = await asyncio.wait_for(
                    Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id)).run(), HANG_S
                )
        finally:
            await bus.close()
        return result

    result = asyncio.run(scenario())
    assert result.status == "completed"
    cue_workers = {result.agents[f"a{i}"].worker for i in range(6)}
    assert cue_workers <= {"w-x", "w-y"}
    for i in range(6):
        assert result.agents[f"b{i}"].worker == result.agents[f"a{i}"].worker, f"b{i}"


# -- found by review: each failed before its fix --------------------------------------------------


def test_a_call_handed_back_on_a_bus_opened_without_its_tier_is_not_lost(redis_server: Any) -> None:
    program = score_program({"long": {"prompt": "p", "simulate": {"latency_ms": 200}}})
    assert program.stations["long"].route.tier == "mid"
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> tuple[WorkerReport, RunResult | None]:
        bus = await ConductorBus.open(url, run_id)  # only the '-' stream: every call is issued there
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 11, 1.0), bus)
            running = asyncio.get_running_loop().create_task(
                Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id)).run()
            )
            async with serving(url, "leaver", concurrency=1, drain_s=0) as leaver:
                await until(lambda: leaver.worker.status()["in_flight"] == 1, "the call to be in flight")
                left = await leaver.stopped()
            async with serving(url, "finisher") as finisher:
                await until(lambda: finisher.worker.report.completed == 1, "the handed-back call to run", 1.5)
                result = await asyncio.wait_for(running, HANG_S)
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await bus.close()
        return left, result

    left, result = asyncio.run(scenario())
    assert left.handed_back == 1
    assert result is not None and result.status == "completed"


def test_a_malformed_result_on_the_cdb_does_not_deafen_the_conductor(redis_server: Any) -> None:
    program = score_program(ONE_AGENT)
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> RunResult:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        try:
            provider = RemoteProvider(Mode("simulated", 12, 1.0), bus)
            await xadd(url, f"hct:run:{run_id}:cdb", {"r": '{"kind":"result","station":"x","version":1,"result":[]}'})
            await until(lambda: bus.malformed == 1, "the bad result to be counted", 1.0)
            async with serving(url, "w-cdb"):
                return await asyncio.wait_for(
                    Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id)).run(), 3.0
                )
        finally:
            await bus.close()

    assert asyncio.run(scenario()).status == "completed"


def test_a_worker_stopped_while_redis_is_away_still_returns_its_report(redis_server: Any) -> None:
    program = score_program({"slow": {"prompt": "p", "simulate": {"latency_ms": 20000}}})
    run_id = new_run_id()
    url = redis_server.url

    async def scenario() -> WorkerReport:
        bus = await ConductorBus.open(url, run_id, program.tiers)
        running: asyncio.Task[RunResult] | None = None
        try:
            provider = RemoteProvider(Mode("simulated", 13, 1.0), bus)
            performer = Performer(program, Hands(lambda spec: provider), options=EngineOptions(run_id=run_id))
            async with serving(url, "w-away", drain_s=0) as serve:
                running = asyncio.get_running_loop().create_task(performer.run())
                await until(lambda: serve.worker.status()["in_flight"] == 1, "the slow call to be in flight")
                redis_server.stop()
                try:
                    return await serve.stopped()
                finally:
                    await asyncio.wait_for(running, HANG_S)  # interrupted: Redis is lost
                    redis_server.start()
        finally:
            if running is not None and not running.done():
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            await bus.close()

    report = asyncio.run(scenario())
    assert report.worker == "w-away"
    assert report.completed == 0


def test_a_worker_that_joins_a_run_as_it_ends_leaves_no_keys_behind(redis_server: Any) -> None:
    url = redis_server.url

    async def scenario() -> tuple[list[str], bool]:
        queue = await RedisWorkQueue.open(url, "w-late")
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            # The state the worker sees when it reads hct:runs just before the conductor's trim.
            await client.sadd("hct:runs", "ended")
            await queue.refresh()
            await client.srem("hct:runs", "ended")  # the trim: the run is no longer listed
            await queue.refresh()  # the worker leaves the run
        finally:
            await client.aclose()
            await queue.close()
        return await run_keys(url, "ended")

    keys, listed = asyncio.run(scenario())
    assert not listed
    assert keys == []
