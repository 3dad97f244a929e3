"""The common data bus on Redis Streams: the only module that imports redis.

Keys, all under ``hct:``::

    hct:runs                      SET of runs in progress (workers discover runs here)
    hct:run:RUN                   HASH: the run's tiers
    hct:run:RUN:work:TIER         STREAM of work items for a tier (``-``: no tier), consumer group ``workers``
    hct:run:RUN:direct:WORKER     STREAM of attacca items for one worker, same group
    hct:run:RUN:streams           SET of the run's work streams (for reclaiming and trimming)
    hct:run:RUN:cdb               STREAM of results and notices: the common data bus the conductor reads
    hct:run:RUN:alive             "alive" while the conductor polls (expires 30 s after it stopped)
    hct:workers                   HASH worker -> its last status (JSON)
    hct:worker:WORKER             "alive" while the worker beats (expires ``claim_after`` after the last beat)

:class:`RedisBus` is the conductor's end of one run: it issues work items and reads the CDB
stream (it is also a :class:`~hct_cli.bus.base.Bus`, so anything that publishes a result reaches
its subscribers through Redis). A worker's end of every run,
:class:`~hct_cli.distributed.queue.RedisWorkQueue`, shares the keys, :func:`connect` and
:class:`Batch` from here.

Commands issued within one event-loop turn go to Redis as one pipeline (:class:`Batch`), so a
fan-out of a hundred ready stations is one round trip, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from hct_cli.bus.base import Broadcast, Handler
from hct_cli.distributed.work import Result, decode_result, encode_result
from hct_cli.errors import BusError, UsageError
from hct_cli.jsonio import dumps

__all__ = [
    "GROUP",
    "NO_TIER",
    "RUNS",
    "WORKERS",
    "Batch",
    "RedisBus",
    "WorkerStatus",
    "alive_key",
    "connect",
    "direct_stream",
    "run_key",
    "shown_url",
    "work_stream",
]

GROUP = "workers"
RUNS = "hct:runs"
WORKERS = "hct:workers"
NO_TIER = "-"
_BLOCK_MS = 1000  # a blocking read returns at least this often, so a silent server is noticed
_FORGET_S = 600.0  # a worker silent this long leaves the roster
_RUN_ALIVE_MS = 30_000  # a run whose conductor has not polled for this long is left by workers
_HINT = "Start redis-server, or check the URL (redis://HOST:PORT/DB), then run again."

ResultListener = Callable[[Result], None]


def run_key(run: str, *parts: str) -> str:
    return ":".join(("hct:run", run, *parts))


def work_stream(run: str, tier: str | None) -> str:
    return run_key(run, "work", tier or NO_TIER)


def direct_stream(run: str, worker: str) -> str:
    return run_key(run, "direct", worker)


def alive_key(worker: str) -> str:
    return f"hct:worker:{worker}"


#: Where a resumed run's Redis password comes from: the journal keeps the run's URL masked.
PASSWORD_ENV = "HCT_REDIS_PASSWORD"
_MASK = "***"


def shown_url(url: str) -> str:
    """``url`` as messages show it and the journal keeps it: a password in it is masked (in the
    authority, or as a ``password=`` query parameter, which redis-py reads too)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(key == "password" for key, _ in query):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}:" if parts.username else ":"
        netloc = f"{user}{_MASK}@{netloc.rpartition('@')[2]}"
    if any(key == "password" for key, _ in query):
        query = [(key, _MASK if key == "password" else value) for key, value in query]
        return _join(parts, netloc, urlencode(query, safe="*"))
    return _join(parts, netloc, parts.query)


def _join(parts: SplitResult, netloc: str, query: str) -> str:
    # Not urlunsplit: it drops the empty authority of unix:///path, which redis-py then misreads.
    url = f"{parts.scheme}://{netloc}{parts.path}"
    return url + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def is_masked(url: str) -> bool:
    """Whether ``url`` had its password masked by :func:`shown_url`."""
    parts = urlsplit(url)
    return parts.password == _MASK or (_MASK in parts.query and ("password", _MASK) in parse_qsl(parts.query))


def with_password(url: str, password: str) -> str:
    """A masked ``url`` with its password put back."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password == _MASK:
        user = f"{parts.username}:" if parts.username else ":"
        netloc = f"{user}{quote(password, safe='')}@{netloc.rpartition('@')[2]}"
    query = [(k, password if k == "password" and v == _MASK else v) for k, v in parse_qsl(parts.query, True)]
    return _join(parts, netloc, urlencode(query) if query else parts.query)


async def connect(url: str) -> Any:
    """A client for ``url``, after a PING: a clear :class:`BusError` before anything runs."""
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    try:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=3.0,
            socket_timeout=_BLOCK_MS / 1000 + 10.0,
            # A blip is retried for about a second; a server that stays away ends the run.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 4),
        )
    except ValueError as exc:  # a command-line mistake, not a fault of the bus
        raise UsageError(f"{shown_url(url)!r} is not a Redis URL: {exc}", hint="Use redis://HOST:PORT/DB.") from exc
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise BusError(f"cannot reach Redis at {shown_url(url)}: {exc}", hint=_HINT) from exc
    return client


def _lost(url: str, exc: BaseException) -> BusError:
    return BusError(
        f"lost Redis at {shown_url(url)}: {type(exc).__name__}: {exc}",
        hint="Bring Redis back, then continue with `hct perform --resume RUN`.",
    )


class Batch:
    """Commands queued within one loop turn, sent to Redis as one pipeline."""

    def __init__(self, client: Any, url: str, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._client = client
        self._url = url
        self._on_error = on_error
        self._ops: list[Callable[[Any], None]] = []
        self._done: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, op: Callable[[Any], None]) -> asyncio.Future[None]:
        """Queue ``op(pipeline)``; the future completes when its pipeline has executed."""
        if self._done is None:
            loop = asyncio.get_running_loop()
            self._done = loop.create_future()
            self._done.add_done_callback(_retrieve)
            loop.call_soon(self._send)
        self._ops.append(op)
        # Each caller gets its own view: cancelling one (a squashed call) must not cancel the batch.
        return asyncio.shield(self._done)

    def _send(self) -> None:
        ops, done = self._ops, self._done
        self._ops, self._done = [], None
        assert done is not None
        task = asyncio.get_running_loop().create_task(self._execute(ops, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, ops: list[Callable[[Any], None]], done: asyncio.Future[None]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for op in ops:
                op(pipe)
            await pipe.execute()
        except asyncio.CancelledError:
            if not done.done():
                done.cancel()
            raise
        except Exception as exc:
            if not done.done():
                done.set_exception(_lost(self._url, exc))
            if self._on_error is not None:
                self._on_error(exc)
            return
        if not done.done():
            done.set_result(None)

    async def drain(self) -> None:
        """Wait for what is queued or in flight to reach Redis (errors are the callers')."""
        if self._done is not None:
            await asyncio.wait([self._done])
        if self._tasks:
            await asyncio.wait(list(self._tasks))


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a batch's failure as seen: every caller awaits it, but a cancelled caller may not."""
    if not future.cancelled():
        future.exception()


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


async def _roster(client: Any) -> list[WorkerStatus]:
    statuses = await client.hgetall(WORKERS)
    if not statuses:
        return []
    names = sorted(statuses)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.exists(alive_key(name))
    alive = await pipe.execute()
    roster = [WorkerStatus.from_json(name, bool(up), statuses[name]) for name, up in zip(names, alive, strict=True)]
    gone = [w.worker for w in roster if not w.alive and time.time() - w.beat > _FORGET_S]
    if gone:
        await client.hdel(WORKERS, *gone)
    return [w for w in roster if w.worker not in gone]


class RedisBus:
    """One run's end of the bus in the conductor: issue work items, hear results.

    Open it with :meth:`open`; :meth:`close` trims the run's streams."""

    def __init__(self, client: Any, url: str, run_id: str) -> None:
        self.url = url
        self.run_id = run_id
        self._client = client
        self._cdb = run_key(run_id, "cdb")
        self._tiers: set[str] = set()
        self._handlers: list[Handler] = []
        self._listeners: list[ResultListener] = []
        self._on_lost: list[Callable[[BusError], None]] = []
        self._batch = Batch(client, url, self._lose)
        self._reader: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._silent: set[str] = set()  # workers whose beat stopped: attacca items go to the tier stream
        self._closed = False
        self.lost: BusError | None = None
        self.roster: list[WorkerStatus] = []
        self.malformed = 0

    @classmethod
    async def open(cls, url: str, run_id: str, tiers: Iterable[str | None] = (None,)) -> RedisBus:
        """Connect, start the run's streams afresh (a resume never hears an earlier segment's
        leftovers), announce the run to workers and start hearing results."""
        bus = cls(await connect(url), url, run_id)
        try:
            await bus._start(tiers)
        except Exception as exc:
            await bus._client.aclose()
            raise BusError(f"cannot start run {run_id} on Redis at {shown_url(url)}: {exc}", hint=_HINT) from exc
        return bus

    async def _start(self, tiers: Iterable[str | None]) -> None:
        await self._trim()
        names = sorted({tier or NO_TIER for tier in tiers} | {NO_TIER})
        self._tiers = set(names)
        pipe = self._client.pipeline(transaction=True)
        for tier in names:
            stream = work_stream(self.run_id, tier)
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
            pipe.sadd(run_key(self.run_id, "streams"), stream)
        pipe.xgroup_create(self._cdb, "conductor", id="0", mkstream=True)  # creates the CDB stream
        pipe.hset(run_key(self.run_id), mapping={"tiers": dumps(names), "started": time.time()})
        pipe.set(run_key(self.run_id, "alive"), "1", px=_RUN_ALIVE_MS)
        pipe.sadd(RUNS, self.run_id)
        await pipe.execute()
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self.roster = await _roster(self._client)
        self._poller = loop.create_task(self._poll())

    # -- the Bus protocol --------------------------------------------------------------------

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def listen(self, listener: ResultListener) -> None:
        """Hear everything on the CDB stream: results with their providers' notes, and notices."""
        self._listeners.append(listener)

    def when_lost(self, callback: Callable[[BusError], None]) -> None:
        self._on_lost.append(callback)

    def publish(self, message: Broadcast) -> Awaitable[None]:
        """Put a result on the run's CDB stream (what a worker does)."""
        if self._closed:
            return _done()
        if self.lost is not None:
            raise self.lost
        text = encode_result(message)
        return self._batch.add(lambda pipe: pipe.xadd(self._cdb, {"r": text}, nomkstream=True))

    async def close(self, *, trim: bool = True) -> None:
        """Stop hearing; with ``trim`` (the run is over) delete its streams and leave the run set."""
        if self._closed:
            return
        self._closed = True
        self._handlers.clear()
        self._listeners.clear()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(Exception):  # the roster as the run ends, for whoever shows it
                self.roster = await _roster(self._client)
        if self._reader is not None and self.lost is None:
            # Wake the blocked read with an empty entry rather than cancelling it: a cancel that
            # meets the client's own read timeout can be swallowed, leaving the read blocked.
            with contextlib.suppress(Exception):
                await self._client.xadd(self._cdb, {"r": ""}, nomkstream=True)
        for task in (self._reader, self._poller):
            if task is not None:
                await asyncio.wait([task], timeout=2.0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        try:
            await self._batch.drain()
            if trim and self.lost is None:
                await self._trim()
        except Exception:
            pass  # Redis is gone: nothing to trim; the next segment starts afresh anyway
        finally:
            await self._client.aclose()

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
            raise _lost(self.url, exc) from exc
        if added is None:
            await self._batch.add(lambda pipe: pipe.xadd(self._tier_stream(tier), {"w": payload}))

    # -- hearing --------------------------------------------------------------------------------

    async def _read(self) -> None:
        last = "0-0"
        while not self._closed:
            try:
                reply = await self._client.xread({self._cdb: last}, count=1000, block=_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lose(exc)
                return
            for _stream, entries in reply or ():
                for entry, fields in entries:
                    last = entry
                    try:
                        self._deliver(fields)
                    except Exception:  # a notice no call can take: never let it deafen the run
                        self.malformed += 1

    def _deliver(self, fields: dict[str, str]) -> None:
        text = fields.get("r")
        if not text:
            return  # the wake-up of close()
        try:
            result = decode_result(text) if text is not None else None
        except ValueError:
            result = None
        if result is None:
            self.malformed += 1
            return
        for listener in self._listeners:
            listener(result)
        if result.message is not None:
            for handler in self._handlers:
                handler(result.message)

    def _lose(self, exc: BaseException) -> None:
        if self.lost is not None or self._closed:
            return
        self.lost = _lost(self.url, exc)
        for callback in self._on_lost:
            callback(self.lost)

    async def _poll(self) -> None:
        """Once a second: who serves, and who has gone silent."""
        while True:
            await asyncio.sleep(1.0)
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.set(run_key(self.run_id, "alive"), "1", px=_RUN_ALIVE_MS)
                pipe.sadd(RUNS, self.run_id)  # back in the set if workers took it for dead
                await pipe.execute()
                self.roster = await _roster(self._client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lose(exc)
                return
            self._silent = {w.worker for w in self.roster if not w.alive}


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
