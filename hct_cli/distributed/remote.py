"""The conductor's side of distributed mode: a provider whose calls run on ``hct worker``\\ s.

:class:`RemoteProvider` turns a call into a work item on the bus and waits for its result on
the CDB stream. Results are matched by tag (station, version): the first one for a call in
flight answers it; any later one (a call that was redelivered after its worker went silent,
and answered twice) is counted in ``duplicates`` and otherwise ignored, so a result commits at
most once. A notice about a call in flight (``reclaim``: another worker took it over) becomes an
event of the run through the call's reporter, as a provider's retries do.

When the bus is lost, every call in flight, and every call made afterwards, raises
:class:`~hct_cli.errors.BusError`; the perform loop then stops issuing and ends the run
``interrupted``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from hct_cli.bus.wire import Result
from hct_cli.call_result import CallResult
from hct_cli.distributed.tool_work import TOOL_KIND
from hct_cli.distributed.work import Mode, encode_work
from hct_cli.errors import BusError
from hct_cli.providers.base import CallRequest, ProviderError

__all__ = ["Issuer", "RemoteProvider"]


class Issuer(Protocol):
    """What :class:`RemoteProvider` needs of a bus: issue work, hear results, say when it is lost."""

    run_id: str

    def issue(self, payload: str, tier: str | None, affinity: str | None = None) -> Awaitable[None]: ...

    def listen(self, listener: _Listener) -> None: ...

    def when_lost(self, callback: _LostCallback) -> None: ...


class _Listener(Protocol):
    def __call__(self, result: Result, /) -> None: ...


class _LostCallback(Protocol):
    def __call__(self, error: BusError, /) -> None: ...


class RemoteProvider:
    """Runs model calls on workers; one instance serves every model station of a run."""

    def __init__(self, mode: Mode, bus: Issuer | None = None) -> None:
        self.mode = mode
        self.bus: Issuer | None = None
        self._waiting: dict[tuple[str, int, int], tuple[asyncio.Future[Result], CallRequest]] = {}
        self._lost: BusError | None = None
        self.duplicates = 0  # results heard for no call in flight: redelivered, or of a squashed call
        if bus is not None:
            self.attach(bus)

    def attach(self, bus: Issuer) -> None:
        """Issue on ``bus`` from now on (opened in the run's event loop, so after construction)."""
        self.bus = bus
        bus.listen(self._heard)
        bus.when_lost(self._on_lost)

    async def call(self, request: CallRequest) -> CallResult:
        if self._lost is not None:
            raise self._lost
        if self.bus is None:
            raise BusError("the distributed bus is not open", hint="Open it before the run (Session.play).")
        key = (request.agent.name, request.version, request.step)
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting[key] = (answer, request)
        try:
            await self.bus.issue(encode_work(self.bus.run_id, request, self.mode), request.tier, request.affinity)
            result = await answer
        finally:
            if self._waiting.get(key, (None,))[0] is answer:
                del self._waiting[key]
        for kind, data in result.notes:
            request.note(kind, **data)
        message = result.message
        assert message is not None
        if not message.ok:
            raise ProviderError(message.error or "the call failed on its worker")
        return message.result  # the worker's answer, as its provider gave it

    def _heard(self, result: Result) -> None:
        if result.kind == TOOL_KIND:  # a tool's answer: RemoteTools hears it
            return
        if result.message is None:  # a notice about a call in flight: of whichever round is out
            tag = (result.station, result.version)
            waiting = next((w for (s, v, _), w in self._waiting.items() if (s, v) == tag), None)
            if waiting is not None:
                waiting[1].note(result.kind, **result.data)
            return
        # A tool loop's rounds share a tag: a late duplicate of round k must not answer round k + 1.
        waiting = self._waiting.get((result.station, result.version, result.step))
        if waiting is None or waiting[0].done():
            self.duplicates += 1
            return
        waiting[0].set_result(result)

    def _on_lost(self, error: BusError) -> None:
        self._lost = error
        for answer, _request in self._waiting.values():
            if not answer.done():
                answer.set_exception(error)
