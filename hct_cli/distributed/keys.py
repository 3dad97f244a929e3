"""The Redis keys of distributed mode: how conductors and workers find runs, work and each other.

Keys, all under ``hct:`` (the run's common data bus, ``hct:run:RUN:cdb``, is
:mod:`hct_cli.bus.redis`'s)::

    hct:runs                      SET of runs in progress (workers discover runs here)
    hct:run:RUN                   HASH: the run's tiers
    hct:run:RUN:work:TIER         STREAM of work items for a tier (``-``: no tier), consumer group ``workers``
    hct:run:RUN:direct:WORKER     STREAM of attacca items for one worker, same group
    hct:run:RUN:streams           SET of the run's work streams (for reclaiming and trimming)
    hct:run:RUN:alive             "alive" while the conductor polls (expires 30 s after it stopped)
    hct:workers                   HASH worker -> its last status (JSON)
    hct:worker:WORKER             "alive" while the worker beats (expires ``claim_after`` after the last beat)
"""

from __future__ import annotations

from hct_cli.bus.redis import run_key

__all__ = ["GROUP", "NO_TIER", "RUNS", "RUN_ALIVE_MS", "WORKERS", "alive_key", "direct_stream", "work_stream"]

GROUP = "workers"
RUNS = "hct:runs"
WORKERS = "hct:workers"
NO_TIER = "-"
RUN_ALIVE_MS = 30_000  # a run whose conductor has not polled for this long is left by workers


def work_stream(run: str, tier: str | None) -> str:
    return run_key(run, "work", tier or NO_TIER)


def direct_stream(run: str, worker: str) -> str:
    return run_key(run, "direct", worker)


def alive_key(worker: str) -> str:
    return f"hct:worker:{worker}"
