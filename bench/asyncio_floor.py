"""The bare-asyncio floor for `hct bench --synthetic random --latency-ms 0:0`.

Runs the same random DAG as hct's synthetic workload with the least an asyncio program can do:
one task per ready node, a counter per node, nothing else. Prints microseconds per node, the
reference that hct's scheduling overhead is compared with in docs/benchmarks.md.

    python bench/asyncio_floor.py --agents 10000 --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time

from hct_cli.bench.synthetic import random_dag
from hct_cli.program.compile import compile_score


async def _run(dependents: dict[str, tuple[str, ...]], waiting: dict[str, int], roots: list[str]) -> float:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    remaining = [len(waiting)]

    async def node(name: str) -> None:
        remaining[0] -= 1
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                loop.create_task(node(dependent))  # noqa: RUF006 - the floor keeps no bookkeeping
        if remaining[0] == 0:
            done.set_result(None)

    start = time.perf_counter()
    for name in roots:
        loop.create_task(node(name))  # noqa: RUF006
    await done
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    program = compile_score(random_dag(args.agents, seed=args.seed, latency_ms=(0.0, 0.0)))
    dependents = {name: spec.dependents for name, spec in program.stations.items()}
    figures = []
    for _ in range(args.trials):
        waiting = {name: len(spec.tags) for name, spec in program.stations.items()}
        gc.collect()
        gc.disable()
        figures.append(asyncio.run(_run(dependents, waiting, list(program.roots))) / args.agents * 1e6)
        gc.enable()
    print(
        f"bare asyncio, {args.agents} nodes: median {statistics.median(figures):.2f} us/node "
        f"(min {min(figures):.2f}, max {max(figures):.2f})"
    )


if __name__ == "__main__":
    main()
