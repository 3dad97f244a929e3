"""Distributed mode on loopback: what the Redis bus costs per agent, and how close a real DAG
gets to its critical path over workers.

    python bench/distributed.py --trials 5

Starts a private ``redis-server`` on a free loopback port and ``hct worker`` processes, and runs
the conductor in this process on generated random DAGs (``hct_cli.bench.synthetic.random_dag``):

* ``overhead``: a 1,000-agent DAG whose calls take no time, over 1, 2 and 4 workers, and in
  process for reference. Per-agent overhead is the makespan (first issue to last commit) divided
  by the agents: what issuing, executing and committing one agent costs when nothing else does.
  ``chain`` runs 200 agents one after another: one full round trip per agent (conductor ->
  stream -> worker -> CDB stream -> conductor), nothing to overlap.
* ``dag``: a 1,000-agent DAG with 10-200 ms latencies over 4 workers: makespan / critical path.

Prints one JSON document: medians over ``--trials`` (the first trial of each case is a warm-up
and is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType

from hct_cli.bench.synthetic import random_dag
from hct_cli.distributed.session import Session
from hct_cli.distributed.work import Mode
from hct_cli.engine import Hands
from hct_cli.engine.perform import Performer
from hct_cli.program.compile import compile_score
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import Agent, Score


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    directory = tempfile.mkdtemp(prefix="hct-bench-redis-")
    exe = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        for _ in range(500):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def workers(url: str, count: int, concurrency: int) -> Iterator[list[str]]:
    import redis

    names = [f"bench-w{i}" for i in range(count)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hct_cli", "worker", "--bus", url, "--id", name, "--concurrency", str(concurrency)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in names
    ]
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        deadline = time.monotonic() + 60
        while not all(client.exists(f"hct:worker:{name}") for name in names):
            if time.monotonic() > deadline:
                sys.exit("the workers did not start")
            time.sleep(0.05)
        yield names
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        client.delete("hct:workers")
        client.close()


def chain(agents: int) -> Score:
    base = random_dag(agents, seed=0, latency_ms=(0.0, 0.0))
    linked: dict[str, Agent] = {}
    for i, (name, agent) in enumerate(base.agents.items()):
        linked[name] = replace(agent, cues=(f"a{i - 1}",) if i else ())
    return replace(base, name=f"chain-{agents}", agents=MappingProxyType(linked))


async def perform(score: Score, url: str | None, seed: int) -> tuple[float, float, int]:
    program = compile_score(score)
    if url is None:
        provider = SimulatedProvider(seed)
        result = await Performer(program, Hands(lambda spec: provider)).run()
    else:
        session = Session(url, Mode("simulated", seed, 1.0))
        performer = Performer(program, Hands(lambda spec: session.provider))
        result = await session.play(performer, list(program.tiers))
    assert result.status == "completed", result.status
    return result.makespan_s, result.critical_path_s, len(program.stations)


def measure(score: Score, url: str | None, trials: int) -> dict[str, float]:
    spans: list[float] = []
    paths: list[float] = []
    agents = 0
    for trial in range(trials + 1):
        makespan, path, agents = asyncio.run(perform(score, url, seed=trial))
        if trial:  # the first is a warm-up
            spans.append(makespan)
            paths.append(path)
    makespan = statistics.median(spans)
    figures = {
        "agents": agents,
        "makespan_s": round(makespan, 4),
        "per_agent_ms": round(1000 * makespan / agents, 4),
        "per_agent_ms_each": [round(1000 * s / agents, 4) for s in spans],
    }
    if statistics.median(paths) > 0:
        ratios = [s / p for s, p in zip(spans, paths, strict=True)]
        figures["critical_path_s"] = round(statistics.median(paths), 4)
        figures["ratio"] = round(statistics.median(ratios), 4)
        figures["ratio_each"] = [round(r, 4) for r in ratios]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight per worker")
    args = parser.parse_args()
    zero = random_dag(args.agents, seed=1, latency_ms=(0.0, 0.0))
    timed = random_dag(args.agents, seed=1, latency_ms=(10.0, 200.0))
    report: dict[str, object] = {"trials": args.trials, "cpus": os.cpu_count()}
    report["in_process"] = {
        "overhead": measure(zero, None, args.trials),
        "chain": measure(chain(200), None, args.trials),
    }
    with redis_server() as url:
        for count in (1, 2, 4):
            with workers(url, count, args.concurrency):
                case: dict[str, object] = {"overhead": measure(zero, url, args.trials)}
                if count == 1:
                    case["chain"] = measure(chain(200), url, args.trials)
                if count == 4:
                    case["dag"] = measure(timed, url, args.trials)
                report[f"workers_{count}"] = case
                print(json.dumps({f"workers_{count}": case}), file=sys.stderr, flush=True)
    report["in_process"]["dag"] = measure(timed, None, args.trials)  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
