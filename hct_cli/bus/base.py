"""The common data bus interface (Tomasulo's CDB).

Every result is published as a :class:`Broadcast` under a versioned tag ``station@version``;
the scheduler learns of results only from the bus, so an in-process bus and a Redis bus are
interchangeable under it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Broadcast", "Bus", "Handler"]


@dataclass(slots=True)  # not frozen: built once per call on the hot path, never mutated
class Broadcast:
    """One result on the bus: what a station produced, under which tag version, at what cost."""

    station: str
    version: int
    ok: bool
    output: Any = None
    error: str | None = None
    model: str | None = None
    tier: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0  # the call's own latency (drawn when simulated)
    worker: str | None = None
    cached: bool = False  # served from the L5 result cache at no cost
    cached_tokens: int = 0  # prompt tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # prompt tokens written to it

    @property
    def tag(self) -> str:
        return f"{self.station}@{self.version}"

    def to_data(self) -> dict[str, Any]:
        """The result's fields as JSON data (the journal's ``result`` rows); defaults left out."""
        data: dict[str, Any] = {
            "output": self.output,
            "model": self.model,
            "tier": self.tier,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "latency_s": self.latency_s,
        }
        if not self.ok:
            data["ok"] = False
            data["error"] = self.error
        if self.cached:
            data["cached"] = True
        if self.cached_tokens:
            data["cached_tokens"] = self.cached_tokens
        if self.cache_write_tokens:
            data["cache_write_tokens"] = self.cache_write_tokens
        if self.worker is not None:
            data["worker"] = self.worker
        return data

    @classmethod
    def from_data(cls, station: str, version: int, data: Mapping[str, Any]) -> Broadcast:
        """The inverse of :meth:`to_data`."""
        return cls(
            station,
            version,
            bool(data.get("ok", True)),
            data.get("output"),
            data.get("error"),
            data.get("model"),
            data.get("tier"),
            int(data.get("prompt_tokens", 0)),
            int(data.get("completion_tokens", 0)),
            float(data.get("cost_usd", 0.0)),
            float(data.get("latency_s", 0.0)),
            data.get("worker"),
            bool(data.get("cached", False)),
            int(data.get("cached_tokens", 0)),
            int(data.get("cache_write_tokens", 0)),
        )


Handler = Callable[[Broadcast], None]


class Bus(Protocol):
    """Broadcast results to every subscriber."""

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler`` with every broadcast from now on."""

    def publish(self, message: Broadcast) -> Awaitable[None]:
        """Deliver ``message`` to every subscriber; await the result (``async def`` fits)."""

    async def close(self) -> None:
        """Release the bus's resources; no delivery happens afterwards."""
