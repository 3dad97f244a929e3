"""What one call answered: below both the providers that make calls and the bus that carries them.

A provider returns a :class:`CallResult`; the bus carries it, unchanged, inside a
:class:`~hct_cli.bus.base.Broadcast` under the station's tag. Neither layer imports the other
for it, so the figures of a call are defined once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CallResult", "ToolCall"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call a model asked for in its answer: an instruction the engine issues.

    ``name`` is what the model said (a function name of the request's ``tools``, or a reference
    such as ``git.git_log``); ``arguments`` its parsed arguments, or ``raw`` when they were not a
    JSON object (the model is told so and the call is not made).
    """

    id: str
    name: str
    arguments: Mapping[str, Any]
    raw: str | None = None

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}
        if self.raw is not None:
            data["raw"] = self.raw
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(str(data["id"]), str(data["name"]), dict(data.get("arguments") or {}), data.get("raw"))


@dataclass(slots=True)  # not frozen: built once per call on the hot path; the engine redacts its output in place
class CallResult:
    """One call's answer and its figures."""

    output: Any
    model: str | None  # None only for a call that never ran (a failure, a rest)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0  # the call's own latency (drawn when simulated)
    tier: str | None = None  # the tier that answered (a fallback may have moved the call)
    cached: bool = False  # served from the L5 result cache at no cost
    worker: str | None = None  # the ``hct worker`` that made the call (distributed mode)
    cached_tokens: int = 0  # prompt tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # prompt tokens written to it
    tool_calls: tuple[ToolCall, ...] = ()  # the model asked for tools instead of answering
