"""Attacca in distributed mode: the hand-off runs on the worker that produced the result."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hct_cli.distributed.queue import RedisWorkQueue
from hct_cli.distributed.session import Session
from hct_cli.distributed.work import Mode
from hct_cli.distributed.worker import Worker
from hct_cli.engine import Hands
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.program.compile import compile_score
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import build_score

pytestmark = pytest.mark.timeout(60)

PAIRS = 8


def score(attacca: bool) -> dict[str, Any]:
    agents: dict[str, Any] = {}
    for i in range(PAIRS):
        agents[f"draft{i}"] = {
            "prompt": f"draft {i}",
            "simulate": {"pass_rate": 1.0, "latency_ms": [20, 60]},
            "fermata": {"check": {"judge": {"criteria": "is right"}}},
        }
        agents[f"polish{i}"] = {
            "prompt": f"polish {{{{ cues.draft{i} }}}}",
            "cues": [f"draft{i}"],
            "attacca": attacca,
            "speculate": True,
            "simulate": {"latency_ms": [20, 60]},
        }
    return {"hct": 1, "name": "handoff", "agents": agents}


async def perform_over_workers(url: str, data: dict[str, Any], workers: int) -> RunResult:
    program = compile_score(build_score(data))
    session = Session(url, Mode("simulated", 4, 1.0))
    judge = SimulatedProvider(4)
    performer = Performer(
        program,
        Hands(
            lambda spec: session.provider, judge_provider=judge, gates=Gatekeeper(tiers=program.tiers, simulate_seed=4)
        ),
    )
    queues = [await RedisWorkQueue.open(url, f"w{i}", claim_after_s=2.0) for i in range(workers)]
    stop = asyncio.Event()
    serving = [asyncio.create_task(Worker(q, concurrency=2, heartbeat_s=0.2).run(stop)) for q in queues]
    try:
        return await session.play(performer, list(program.tiers))
    finally:
        stop.set()
        await asyncio.gather(*serving)
        for queue in queues:
            await queue.close()


def test_an_attacca_dependent_runs_on_its_producers_worker(redis_server: Any) -> None:
    result = asyncio.run(perform_over_workers(redis_server.url, score(attacca=True), workers=3))
    assert result.status == "completed"
    producers = {result.agents[f"draft{i}"].worker for i in range(PAIRS)}
    assert len(producers) > 1, "the drafts should spread over the workers for this test to mean anything"
    for i in range(PAIRS):
        assert result.agents[f"polish{i}"].worker == result.agents[f"draft{i}"].worker, i


def test_without_attacca_the_dependents_go_to_any_worker(redis_server: Any) -> None:
    """The control: the same run without attacca does not keep every pair together."""
    result = asyncio.run(perform_over_workers(redis_server.url, score(attacca=False), workers=3))
    assert result.status == "completed"
    together = sum(result.agents[f"polish{i}"].worker == result.agents[f"draft{i}"].worker for i in range(PAIRS))
    assert together < PAIRS
