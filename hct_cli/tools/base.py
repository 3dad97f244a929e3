"""The tool interface: what the engine needs of the servers of one run.

A :class:`ToolBox` holds the score's servers for one run: each is started on its first call
(or listing), its tool list is fetched once, its calls wait on its functional unit
(``concurrency``), and :meth:`ToolBox.aclose` stops every server it started. A
:class:`ToolSession` is one started server; :mod:`hct_cli.tools.mcp_client` implements it on the
``mcp`` SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from hct_cli.score.model import Agent
from hct_cli.score.tools import Effects, ToolServer, qualified

__all__ = ["MAX_REPLY_BYTES", "RemoteTools", "ToolBox", "ToolReply", "ToolSession", "ToolSpec", "function_name"]

#: The largest answer one tool call may give (its text, in bytes); a larger one fails the call.
MAX_REPLY_BYTES = 1 << 20

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def function_name(server: str, tool: str) -> str:
    """The name a model calls ``server.tool`` by: function names allow only ``[A-Za-z0-9_-]``, 64 at most."""
    return _UNSAFE.sub("_", f"{server}__{tool}")[:64]


@dataclass(frozen=True)
class ToolSpec:
    """One tool a server lists, with what the score says of it."""

    server: str
    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"type": "object"}))
    effects: Effects = "write"
    idempotent: bool = False

    @property
    def qualified(self) -> str:
        return qualified(self.server, self.name)

    @property
    def function(self) -> str:
        return function_name(self.server, self.name)

    def definition(self) -> dict[str, Any]:
        """The tool as litellm's (OpenAI's) ``tools=`` entry."""
        return {
            "type": "function",
            "function": {
                "name": self.function,
                "description": self.description or self.qualified,
                "parameters": dict(self.input_schema) or {"type": "object"},
            },
        }

    def to_data(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "name": self.name,
            "tool": self.qualified,
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "effects": self.effects,
            "idempotent": self.idempotent,
        }


@dataclass(frozen=True)
class ToolReply:
    """What one tool call answered, as the model will read it."""

    text: str  # the content, as text (text blocks joined; structured content as JSON)
    is_error: bool = False  # the tool reported a failure (the model is told; the agent goes on)
    data: Any = None  # the structured content, when the tool gave one
    worker: str | None = None  # the hct worker that made the call (a server ``on: worker``)

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8", "replace"))


class ToolSession(Protocol):
    """One started server."""

    async def list_tools(self) -> list[ToolSpec]:
        """Every tool the server offers (effects from the score's entry)."""

    async def call(self, tool: str, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        """Call ``tool``; raise :class:`~hct_cli.errors.ToolError` when the server cannot answer."""

    async def aclose(self) -> None:
        """Stop the server (its process, for stdio) and everything it started."""


class RemoteTools(Protocol):
    """Where servers ``on: worker`` are reached in distributed mode
    (:mod:`hct_cli.distributed.remote_tools`)."""

    def session(self, server: ToolServer, inputs: Mapping[str, Any], tier: str | None) -> ToolSession:
        """A session whose list and calls run on a worker (nothing starts until the first of them)."""


class ToolBox(Protocol):
    """The servers of one run, as the engine uses them."""

    def load(self) -> None:
        """Load what starting a server needs (its SDK) now: synchronous work that would stall the
        event loop, and every call on it, if it happened mid-run."""

    async def tools_for(self, agent: Agent, tier: str | None = None) -> tuple[ToolSpec, ...]:
        """The tools ``agent`` may call, resolved from its ``tools:`` list (starts their servers).

        ``tier`` is where the agent's model calls go: a server ``on: worker`` is started by a
        worker that serves it."""

    async def call(self, spec: ToolSpec, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        """Call one tool on its server's functional unit (waits while the unit is full)."""

    async def aclose(self) -> None:
        """Stop every server this box started; safe to call twice."""
