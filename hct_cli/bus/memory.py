"""The in-process bus: a broadcast is a direct call of every subscriber, in order."""

from __future__ import annotations

from hct_cli.bus.base import Broadcast, Handler

__all__ = ["MemoryBus"]


class MemoryBus:
    """Delivers each broadcast synchronously to every subscriber; needs no server."""

    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self._closed = False
        self.published = 0

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    async def publish(self, message: Broadcast) -> None:
        if self._closed:
            return
        self.published += 1
        for handler in self._handlers:
            handler(message)

    async def close(self) -> None:
        self._closed = True
        self._handlers.clear()
