"""What a tool call costs when its server runs ``on: worker``, against the same call at the conductor.

    python bench/tools_worker.py [--calls 200] [--rounds 3] [--json]

A private ``redis-server`` and one ``hct worker`` on loopback, and the in-tree counter server over
HTTP. One agent in distributed mode (``--bus``) makes ``--calls`` calls of ``echo`` one at a time
(one round, a unit of concurrency 1), first with the server ``on: conductor`` (the conductor calls
it), then ``on: worker`` (each call a tool work item: the conductor journals it, issues it on the
bus, the worker calls the server and answers on the CDB stream). The two alternate ``--rounds``
times; medians per call over all rounds, and their difference: the price of the hop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.distributed import redis_server, workers  # noqa: E402
from bench.tools import hct_calls  # noqa: E402
from tests.tools.servers import counter_http_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"conductor": [], "worker": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        counter_http_server(Path(tmp)) as (url, _state),
        redis_server() as bus,
        workers(bus, 1, 8),
    ):
        hct_calls(url, 20, on="worker", bus=bus)  # warm: the worker's SDK import, the first handshake
        for _ in range(args.rounds):
            for on in ("conductor", "worker"):
                times[on] += hct_calls(url, args.calls, on=on, bus=bus)
    conductor, worker = (statistics.median(times[on]) * 1e3 for on in ("conductor", "worker"))
    figures = {
        "calls": args.calls * args.rounds,
        "on_conductor_median_ms": round(conductor, 3),
        "on_worker_median_ms": round(worker, 3),
        "hop_ms": round(worker - conductor, 3),
        "worker/conductor": round(worker / conductor, 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"per call over {figures['calls']} echo calls in distributed mode: on: conductor {conductor:.3f} ms, "
        f"on: worker {worker:.3f} ms (+{worker - conductor:.3f} ms, {figures['worker/conductor']}x)"
    )


if __name__ == "__main__":
    main()
