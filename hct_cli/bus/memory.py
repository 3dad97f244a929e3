"""The in-process bus: a broadcast is a direct call of every subscriber, in order."""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

from hct_cli.bus.base import Broadcast, Handler


class _Done:
    """An awaitable that is complete from the start (cheaper than a coroutine per publish)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()

__all__ = ["MemoryBus"]


class MemoryBus:
    """Delivers each broadcast synchronously to every subscriber; needs no server."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._closed = False
        self.published = 0

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, message: Broadcast) -> Awaitable[None]:
        """Deliver now; the returned awaitable is already done, so awaiting it never suspends."""
        if not self._closed:
            self.published += 1
            for handler in self._handlers:
                handler(message)
        return _DONE

    async def close(self) -> None:
        self._closed = True
        self._handlers.clear()
