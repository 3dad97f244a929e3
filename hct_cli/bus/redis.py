"""The common data bus on Redis Streams: the only module that imports redis.

A run's results travel on one stream, ``hct:run:RUN:cdb`` (the common data bus the conductor
reads). :class:`RedisBus` is the :class:`~hct_cli.bus.base.Bus` on that stream: anything that
publishes a result reaches its subscribers through Redis. Issuing work to workers, the run's
work streams and the roster of workers are distributed mode's, built on this module in
:mod:`hct_cli.distributed.conductor` (the conductor's end) and
:mod:`hct_cli.distributed.queue` (a worker's end), which share :func:`connect`,
:func:`run_key` and :class:`Batch` from here.

Commands issued within one event-loop turn go to Redis as one pipeline (:class:`Batch`), so a
fan-out of a hundred ready stations is one round trip, not a hundred.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from hct_cli.bus.base import Broadcast, Handler
from hct_cli.bus.wire import Result, decode_result, encode_result
from hct_cli.errors import BusError, UsageError

__all__ = [
    "PASSWORD_ENV",
    "Batch",
    "RedisBus",
    "ResultListener",
    "connect",
    "is_masked",
    "lost_error",
    "run_key",
    "shown_url",
    "with_password",
]

_BLOCK_MS = 1000  # a blocking read returns at least this often, so a silent server is noticed
HINT = "Start redis-server, or check the URL (redis://HOST:PORT/DB), then run again."

ResultListener = Callable[[Result], None]


def run_key(run: str, *parts: str) -> str:
    return ":".join(("hct:run", run, *parts))


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
        raise BusError(f"cannot reach Redis at {shown_url(url)}: {exc}", hint=HINT) from exc
    return client


def lost_error(url: str, exc: BaseException) -> BusError:
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
                done.set_exception(lost_error(self._url, exc))
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


class RedisBus:
    """One run's common data bus on Redis: publish results, hear them (and the notices beside them).

    Open it with :meth:`open`; :meth:`close` trims the run's stream."""

    def __init__(self, client: Any, url: str, run_id: str) -> None:
        self.url = url
        self.run_id = run_id
        self._client = client
        self._cdb = run_key(run_id, "cdb")
        self._handlers: list[Handler] = []
        self._listeners: list[ResultListener] = []
        self._on_lost: list[Callable[[BusError], None]] = []
        self._batch = Batch(client, url, self._lose)
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.lost: BusError | None = None
        self.malformed = 0

    @classmethod
    async def open(cls, url: str, run_id: str) -> RedisBus:
        """Connect, start the run's stream afresh (a resume never hears an earlier segment's
        leftovers) and start hearing results."""
        bus = cls(await connect(url), url, run_id)
        await bus._launch()
        return bus

    async def _launch(self) -> None:
        try:
            await self._start()
        except Exception as exc:
            await self._client.aclose()
            raise BusError(
                f"cannot start run {self.run_id} on Redis at {shown_url(self.url)}: {exc}", hint=HINT
            ) from exc

    async def _start(self) -> None:
        await self._trim()
        pipe = self._client.pipeline(transaction=True)
        self._prepare(pipe)
        await pipe.execute()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    def _prepare(self, pipe: Any) -> None:
        """Queue, on the start's transaction, what the run's keys need before anything is heard."""
        pipe.xgroup_create(self._cdb, "conductor", id="0", mkstream=True)  # creates the CDB stream

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
        """Stop hearing; with ``trim`` (the run is over) delete the run's keys."""
        if self._closed:
            return
        self._closed = True
        self._handlers.clear()
        self._listeners.clear()
        await self._stopping()
        if self._reader is not None and self.lost is None:
            # Wake the blocked read with an empty entry rather than cancelling it: a cancel that
            # meets the client's own read timeout can be swallowed, leaving the read blocked.
            with contextlib.suppress(Exception):
                await self._client.xadd(self._cdb, {"r": ""}, nomkstream=True)
        for task in (self._reader, *self._helpers()):
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

    async def _stopping(self) -> None:
        """What an extension does first when the bus closes (before the reader stops)."""

    def _helpers(self) -> tuple[asyncio.Task[None] | None, ...]:
        """An extension's own background tasks, stopped with the reader."""
        return ()

    async def _trim(self) -> None:
        await self._client.delete(self._cdb)

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
        self.lost = lost_error(self.url, exc)
        for callback in self._on_lost:
            callback(self.lost)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
