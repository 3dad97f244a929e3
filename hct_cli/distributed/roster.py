"""The roster of workers: each worker's last beat, as the conductor's panel and ``hct`` show it.

A worker writes its status to ``hct:workers`` as it beats; a conductor reads them all, with
whether each worker's alive key still stands, and forgets a worker silent for long.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from hct_cli.distributed.keys import WORKERS, alive_key

__all__ = ["FORGET_S", "WorkerStatus", "read_roster"]

FORGET_S = 600.0  # a worker silent this long leaves the roster


@dataclass(frozen=True)
class WorkerStatus:
    """A worker as its last beat described it."""

    worker: str
    alive: bool
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    concurrency: int = 0
    tiers: tuple[str, ...] | None = None
    runs: tuple[str, ...] = ()
    beat: float = 0.0

    @classmethod
    def from_json(cls, worker: str, alive: bool, text: str) -> WorkerStatus:
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        tiers = data.get("tiers")
        return cls(
            worker,
            alive,
            int(data.get("in_flight", 0)),
            int(data.get("completed", 0)),
            int(data.get("failed", 0)),
            int(data.get("concurrency", 0)),
            tuple(tiers) if tiers is not None else None,
            tuple(data.get("runs", ())),
            float(data.get("beat", 0.0)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "alive": self.alive,
            "in_flight": self.in_flight,
            "completed": self.completed,
            "failed": self.failed,
        }


async def read_roster(client: Any) -> list[WorkerStatus]:
    statuses = await client.hgetall(WORKERS)
    if not statuses:
        return []
    names = sorted(statuses)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(alive_key(name))
    alive = await pipe.execute()
    roster = [WorkerStatus.from_json(name, bool(up), statuses[name]) for name, up in zip(names, alive, strict=True)]
    gone = [w.worker for w in roster if not w.alive and time.time() - w.beat > FORGET_S]
    if gone:
        await client.hdel(WORKERS, *gone)
    return [w for w in roster if w.worker not in gone]
