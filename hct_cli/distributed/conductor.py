"""The conductor's end of a run on Redis: its common data bus, plus issuing work and the roster.

:class:`ConductorBus` is a :class:`~hct_cli.bus.redis.RedisBus` (so the performer hears results
through it like through any bus) that also announces the run to workers (``hct:runs``, the
run's tiers, its alive key), creates the run's work streams, issues work items to them and
polls the roster once a second. The keys are :mod:`hct_cli.distributed.keys`'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterable
from typing import Any

from hct_cli.bus.redis import RedisBus, connect, lost_error, run_key
from hct_cli.distributed.keys import GROUP, NO_TIER, RUN_ALIVE_MS, RUNS, direct_stream, work_stream
from hct_cli.distributed.roster import WorkerStatus, read_roster
from hct_cli.jsonio import dumps

__all__ = ["ConductorBus"]


class ConductorBus(RedisBus):
    """One run's end of the bus in the conductor: issue work items, hear results.

    Open it with :meth:`open`; :meth:`close` trims the run's streams."""

    def __init__(self, client: Any, url: str, run_id: str) -> None:
        super().__init__(client, url, run_id)
        self._tiers: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._silent: set[str] = set()  # workers whose beat stopped: attacca items go to the tier stream
        self.roster: list[WorkerStatus] = []

    @classmethod
    async def open(cls, url: str, run_id: str, tiers: Iterable[str | None] = (None,)) -> ConductorBus:
        """Connect, start the run's streams afresh (a resume never hears an earlier segment's
        leftovers), announce the run to workers and start hearing results."""
        bus = cls(await connect(url), url, run_id)
        bus._tiers = {tier or NO_TIER for tier in tiers} | {NO_TIER}
        await bus._launch()
        return bus

    async def _start(self) -> None:
        await super()._start()
        self.roster = await read_roster(self._client)
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    def _prepare(self, pipe: Any) -> None:
        names = sorted(self._tiers)
        for tier in names:
            stream = work_stream(self.run_id, tier)
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            pipe.sadd(run_key(self.run_id, "streams"), stream)
        super()._prepare(pipe)
        pipe.hset(run_key(self.run_id), mapping={"tiers": dumps(names), "started": time.time()})
        pipe.set(run_key(self.run_id, "alive"), "1", px=RUN_ALIVE_MS)
        pipe.sadd(RUNS, self.run_id)

    async def _stopping(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(Exception):  # the roster as the run ends, for whoever shows it
                self.roster = await read_roster(self._client)

    def _helpers(self) -> tuple[asyncio.Task[None] | None, ...]:
        return (self._poller,)

    async def _trim(self) -> None:
        streams = await self._client.smembers(run_key(self.run_id, "streams"))
        keys = [
            *streams,
            self._cdb,
            run_key(self.run_id),
            run_key(self.run_id, "streams"),
            run_key(self.run_id, "alive"),
        ]
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(*keys)
        pipe.srem(RUNS, self.run_id)
        await pipe.execute()

    # -- issuing ------------------------------------------------------------------------------

    def issue(self, payload: str, tier: str | None, affinity: str | None = None) -> Awaitable[None]:
        """Put a work item on its tier's stream (or on ``affinity``'s own stream unless that worker
        has gone silent); completes once Redis has it."""
        if self.lost is not None:
            raise self.lost
        if affinity is not None and affinity not in self._silent:
            return self._issue_to(affinity, payload, tier)
        return self._batch.add(lambda pipe: pipe.xadd(self._tier_stream(tier), {"w": payload}))

    def _tier_stream(self, tier: str | None) -> str:
        name = tier or NO_TIER
        return work_stream(self.run_id, name if name in self._tiers else NO_TIER)

    async def _issue_to(self, worker: str, payload: str, tier: str | None) -> None:
        """Onto ``worker``'s own stream if it has joined this segment of the run (the stream
        exists), else onto the tier's stream: an item is never left where nobody reads."""
        try:
            added = await self._client.xadd(direct_stream(self.run_id, worker), {"w": payload}, nomkstream=True)
        except Exception as exc:
            self._lose(exc)
            raise lost_error(self.url, exc) from exc
        if added is None:
            await self._batch.add(lambda pipe: pipe.xadd(self._tier_stream(tier), {"w": payload}))

    async def _poll(self) -> None:
        """Once a second: who serves, and who has gone silent."""
        while True:
            await asyncio.sleep(1.0)
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.set(run_key(self.run_id, "alive"), "1", px=RUN_ALIVE_MS)
                pipe.sadd(RUNS, self.run_id)  # back in the set if workers took it for dead
                await pipe.execute()
                self.roster = await read_roster(self._client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lose(exc)
                return
            self._silent = {w.worker for w in self.roster if not w.alive}
