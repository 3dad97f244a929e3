"""A worker's end of the Redis bus: work from every run in progress, for the tiers it serves.

It reads work items through the consumer group, puts results on the run's CDB stream *before*
acknowledging them, beats, and reclaims the pending entries of workers that stopped beating
(``XAUTOCLAIM``). The keys are described in :mod:`hct_cli.distributed.keys`; :mod:`hct_cli.bus.redis` is the one
module that imports redis; this one only sends commands through the client it opens.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.bus.redis import Batch, connect, run_key
from hct_cli.bus.wire import encode_notice, encode_result
from hct_cli.distributed.keys import GROUP, NO_TIER, RUNS, WORKERS, alive_key, direct_stream, work_stream
from hct_cli.jsonio import dumps

__all__ = ["Delivery", "RedisWorkQueue", "default_worker_id"]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(slots=True)
class Delivery:
    """A work item handed to this worker: where it came from, so it can be acknowledged."""

    run: str
    stream: str
    entry: str
    payload: str
    reclaimed_from: str | None = None  # the silent worker it was taken from
    deliveries: int = 1  # how many workers have been given it, this one included


@dataclass(frozen=True)
class _Run:
    streams: list[str]  # work streams this worker reads, its own attacca stream first
    direct: str
    tiers: frozenset[str]  # every tier the run has a stream for


class RedisWorkQueue:
    """A worker's end of the bus: work from every run in progress, for the tiers it serves."""

    def __init__(self, client: Any, url: str, worker: str, tiers: frozenset[str] | None, claim_after_s: float) -> None:
        self.url = url
        self.worker = worker
        self.tiers = tiers
        self.claim_after_ms = max(1, round(claim_after_s * 1000))
        self._client = client
        self._batch = Batch(client, url)
        self._runs: dict[str, _Run] = {}

    @classmethod
    async def open(
        cls, url: str, worker: str, *, tiers: Iterable[str] | None = None, claim_after_s: float = 5.0
    ) -> RedisWorkQueue:
        return cls(await connect(url), url, worker, frozenset(tiers) if tiers is not None else None, claim_after_s)

    @property
    def runs(self) -> tuple[str, ...]:
        return tuple(self._runs)

    def _serves(self, tier: str) -> bool:
        return self.tiers is None or tier in self.tiers

    async def refresh(self) -> None:
        """Join runs that started, leave runs that ended."""
        listed = sorted(await self._client.smembers(RUNS))
        current = set(listed)
        if listed:
            pipe = self._client.pipeline(transaction=False)
            for run in listed:
                pipe.exists(run_key(run, "alive"))
            dead = [run for run, alive in zip(listed, await pipe.execute(), strict=True) if not alive]
            if dead:  # their conductors are gone: a resume starts them afresh
                await self._client.srem(RUNS, *dead)
                current -= set(dead)
        for run in [r for r in self._runs if r not in current]:
            gone = self._runs.pop(run)
            pipe = self._client.pipeline(transaction=False)  # the run is over: what we added is ours to remove
            pipe.delete(gone.direct)
            pipe.srem(run_key(run, "streams"), gone.direct)
            await pipe.execute()
        for run in current:
            if run in self._runs:
                continue
            tiers = json.loads(await self._client.hget(run_key(run), "tiers") or "[]")
            direct = direct_stream(run, self.worker)
            pipe = self._client.pipeline(transaction=False)
            pipe.xgroup_create(direct, GROUP, id="0", mkstream=True)
            pipe.sadd(run_key(run, "streams"), direct)
            pipe.sismember(RUNS, run)
            *_, still = await pipe.execute(raise_on_error=False)  # BUSYGROUP: joined before (a restart)
            if not still:  # it ended as we joined: take back what we created
                pipe = self._client.pipeline(transaction=False)
                pipe.delete(direct)
                pipe.srem(run_key(run, "streams"), direct)
                await pipe.execute()
                continue
            streams = [work_stream(run, tier) for tier in tiers if self._serves(tier)]
            self._runs[run] = _Run([direct, *streams], direct, frozenset(tiers))

    async def take(self, count: int, block_ms: int) -> list[Delivery]:
        """Up to ``count`` new work items, waiting up to ``block_ms`` for the first."""
        read = {stream: ">" for run in self._runs.values() for stream in run.streams}
        if not read:
            await asyncio.sleep(block_ms / 1000)
            return []
        try:
            reply = await self._client.xreadgroup(GROUP, self.worker, read, count=count, block=block_ms)
        except Exception as exc:
            if "NOGROUP" in str(exc) or "UNBLOCKED" in str(exc):
                # A run's streams were trimmed: it ended, or a resume started it afresh. Join
                # every run again as it is now (a run that ended is simply not there).
                self._runs.clear()
                await self.refresh()
                return []
            raise
        taken = [self._delivery(stream, entry, fields) for stream, entries in reply or () for entry, fields in entries]
        if len(taken) > count:  # COUNT is per stream: put back what exceeds this worker's free slots
            await self.requeue(taken[count:])
            taken = taken[:count]
        return taken

    async def requeue(self, deliveries: list[Delivery]) -> None:
        """Put items back at the end of the stream they came from, for whoever reads next."""
        if not deliveries:
            return
        pipe = self._client.pipeline(transaction=False)
        for delivery in deliveries:
            pipe.xadd(delivery.stream, {"w": delivery.payload}, nomkstream=True)
            pipe.xack(delivery.stream, GROUP, delivery.entry)
        await pipe.execute(raise_on_error=False)

    def _delivery(self, stream: str, entry: str, fields: dict[str, str], source: str | None = None) -> Delivery:
        run = stream.split(":", 3)[2]
        return Delivery(run, stream, entry, fields.get("w", ""), source)

    def finish(
        self, delivery: Delivery, message: Broadcast, notes: list[tuple[str, dict[str, Any]]], step: int = 0
    ) -> Awaitable[None]:
        """Put the result on the run's CDB stream, then acknowledge the item (in that order: a
        worker that dies between the two leaves a duplicate, which the conductor ignores, never a
        loss)."""
        return self.answer(delivery, encode_result(message, notes, step))

    def answer(self, delivery: Delivery, text: str) -> Awaitable[None]:
        """Put ``text`` (an encoded result or answer) on the run's CDB stream, then acknowledge the item."""
        cdb = run_key(delivery.run, "cdb")

        def ops(pipe: Any) -> None:
            pipe.xadd(cdb, {"r": text}, nomkstream=True)
            pipe.xack(delivery.stream, GROUP, delivery.entry)

        return self._batch.add(ops)

    def drop(self, delivery: Delivery) -> Awaitable[None]:
        """Acknowledge an item that can never run (malformed)."""
        return self._batch.add(lambda pipe: pipe.xack(delivery.stream, GROUP, delivery.entry))

    def notify(self, run: str, kind: str, station: str, version: int, **data: Any) -> Awaitable[None]:
        text = encode_notice(kind, station, version, **data)
        return self._batch.add(lambda pipe: pipe.xadd(run_key(run, "cdb"), {"r": text}, nomkstream=True))

    async def beat(self, status: dict[str, Any], owned: Iterable[Delivery]) -> None:
        """Say this worker is alive, and keep its pending entries from looking idle."""
        pipe = self._client.pipeline(transaction=False)
        pipe.set(alive_key(self.worker), "1", px=self.claim_after_ms)
        pipe.hset(WORKERS, self.worker, dumps({**status, "beat": time.time()}))
        by_stream: dict[str, list[str]] = {}
        for delivery in owned:
            by_stream.setdefault(delivery.stream, []).append(delivery.entry)
        for stream, entries in by_stream.items():
            pipe.xclaim(stream, GROUP, self.worker, 0, entries, justid=True)
        await pipe.execute(raise_on_error=False)  # a stream trimmed meanwhile: its run is over

    async def reclaim(self, count: int) -> list[Delivery]:
        """Take over, up to ``count``, work of workers that stopped beating: their pending
        entries idle longer than ``claim_after`` (``XAUTOCLAIM``, following its cursor through
        the whole pending list), and what waits on their attacca streams."""
        taken: list[Delivery] = []
        for name, run in list(self._runs.items()):
            streams = await self._client.smembers(run_key(name, "streams"))
            served = [s for s in streams if s != run.direct and (":direct:" in s or self._serves(s.rsplit(":", 1)[1]))]
            for stream in served:
                pending = await self._client.xpending_range(stream, GROUP, "-", "+", 1000, idle=self.claim_after_ms)
                if not pending:
                    continue
                # Whose work it was, and how often it was handed out already.
                owners = {p["message_id"]: (p["consumer"], int(p["times_delivered"])) for p in pending}
                cursor = "0-0"
                while len(taken) < count:
                    cursor, entries, *_ = await self._client.xautoclaim(
                        stream, GROUP, self.worker, self.claim_after_ms, cursor, count=count - len(taken)
                    )
                    for entry, fields in entries:
                        if fields:
                            owner, delivered = owners.get(entry, ("?", 1))
                            delivery = self._delivery(stream, entry, fields, owner)
                            delivery.deliveries = delivered + 1
                            taken.append(delivery)
                    if cursor == "0-0":
                        break
            for stream in [s for s in served if ":direct:" in s]:
                owner = stream.rsplit(":", 1)[1]
                if len(taken) >= count or await self._client.exists(alive_key(owner)):
                    continue
                reply = await self._client.xreadgroup(GROUP, self.worker, {stream: ">"}, count=count - len(taken))
                taken += [
                    self._delivery(s, entry, fields, owner) for s, entries in reply or () for entry, fields in entries
                ]
            if len(taken) >= count:
                break
        return taken

    async def hand_back(self, deliveries: Iterable[Delivery], tier_of: Callable[[Delivery], str | None]) -> None:
        """Return unfinished items for another worker (a drain that ran out of time): to the
        stream they came from, or from this worker's attacca stream to their tier's stream."""
        pipe = self._client.pipeline(transaction=False)
        for delivery in deliveries:
            run = self._runs.get(delivery.run)
            stream = delivery.stream
            if run is not None and stream == run.direct:
                tier = tier_of(delivery) or NO_TIER
                stream = work_stream(delivery.run, tier if tier in run.tiers else NO_TIER)
            pipe.xadd(stream, {"w": delivery.payload}, nomkstream=True)
            pipe.xack(delivery.stream, GROUP, delivery.entry)
        await pipe.execute(raise_on_error=False)

    async def leave(self, status: dict[str, Any]) -> None:
        """Stop beating: the roster shows this worker as gone at once."""
        await self._batch.drain()
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(alive_key(self.worker))
        pipe.hset(WORKERS, self.worker, dumps({**status, "beat": time.time()}))
        # The consumer stays in its groups: deleting it would drop whatever it still has pending
        # (a finish lost to a blip), which others must be able to reclaim.
        await pipe.execute(raise_on_error=False)

    async def close(self) -> None:
        await self._client.aclose()
