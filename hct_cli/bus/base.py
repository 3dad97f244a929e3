"""The common data bus interface (Tomasulo's CDB).

Every result is published as a :class:`Broadcast` under a versioned tag ``station@version``;
the scheduler learns of results only from the bus, so an in-process bus and a Redis bus are
interchangeable under it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hct_cli.call_result import CallResult, ToolCall

__all__ = ["Broadcast", "Bus", "Handler"]


def _no_answer() -> CallResult:
    return CallResult(None, None)


@dataclass(slots=True)  # not frozen: built once per call on the hot path
class Broadcast:
    """One result on the bus: what a station's call answered (or why it failed), under which tag version."""

    station: str
    version: int
    ok: bool
    result: CallResult = field(default_factory=_no_answer)  # a failure's: no output, no figures
    error: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.station}@{self.version}"

    def to_data(self) -> dict[str, Any]:
        """The result's fields as JSON data (the journal's ``result`` rows); defaults left out."""
        result = self.result
        data: dict[str, Any] = {
            "output": result.output,
            "model": result.model,
            "tier": result.tier,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": result.cost_usd,
            "latency_s": result.latency_s,
        }
        if not self.ok:
            data["ok"] = False
            data["error"] = self.error
        if result.cached:
            data["cached"] = True
        if result.cached_tokens:
            data["cached_tokens"] = result.cached_tokens
        if result.cache_write_tokens:
            data["cache_write_tokens"] = result.cache_write_tokens
        if result.worker is not None:
            data["worker"] = result.worker
        if result.tool_calls:  # only then: older journals and the wire's keys stay as they were
            data["tool_calls"] = [call.to_data() for call in result.tool_calls]
        return data

    @classmethod
    def from_data(cls, station: str, version: int, data: Mapping[str, Any]) -> Broadcast:
        """The inverse of :meth:`to_data`."""
        result = CallResult(
            data.get("output"),
            data.get("model"),
            int(data.get("prompt_tokens", 0)),
            int(data.get("completion_tokens", 0)),
            float(data.get("cost_usd", 0.0)),
            float(data.get("latency_s", 0.0)),
            data.get("tier"),
            bool(data.get("cached", False)),
            data.get("worker"),
            int(data.get("cached_tokens", 0)),
            int(data.get("cache_write_tokens", 0)),
            tuple(ToolCall.from_data(call) for call in data.get("tool_calls") or ()),
        )
        return cls(station, version, bool(data.get("ok", True)), result, data.get("error"))


Handler = Callable[[Broadcast], None]


class Bus(Protocol):
    """Broadcast results to every subscriber."""

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler`` with every broadcast from now on."""

    def publish(self, message: Broadcast) -> Awaitable[None]:
        """Deliver ``message`` to every subscriber; await the result (``async def`` fits)."""

    async def close(self) -> None:
        """Release the bus's resources; no delivery happens afterwards."""
