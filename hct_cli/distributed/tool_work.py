"""The wire format of tools on workers: a tool work item, and its answer on the CDB stream.

A server ``on: worker`` runs on an hct worker, so its listing and its calls travel as work items
beside the model calls. A :class:`ToolWork` carries the server's whole entry as the score wrote
it (so the worker checks it against its own allow list by the same fingerprint as ``hct tools
--trust``), only the inputs its command names, and for a call the tool and its arguments. The
answer is a notice of kind :data:`TOOL_KIND` on the run's CDB stream, matched to its item by
``ticket`` (random, so a late answer from an earlier segment of a resumed run matches nothing).
Credentials never travel: the worker reads the variables the entry declares from its own
environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from hct_cli.bus.wire import encode_notice
from hct_cli.jsonio import dumps
from hct_cli.score.template import check_template
from hct_cli.score.tools import ToolServer, tool_servers_from_data

__all__ = ["TOOL_KIND", "ToolAnswer", "ToolWork", "command_inputs", "decode_tool_work"]

#: The ``kind`` of a tool work item, and of its answer on the CDB stream.
TOOL_KIND = "tool"

Op = Literal["list", "call"]


def command_inputs(server: ToolServer, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs ``server``'s command templates name: all of the run's inputs a worker needs."""
    names: set[str] = set()
    for item in server.command:
        if "{" in item:
            references, _ = check_template(item)
            names.update(r.name for r in references if r.namespace == "inputs")
    return {name: inputs[name] for name in sorted(names) if name in inputs}


@dataclass(frozen=True, slots=True)
class ToolWork:
    """One listing or one call of a server ``on: worker``, as a worker receives it."""

    run: str
    ticket: str
    op: Op
    server: ToolServer
    inputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tool: str = ""
    arguments: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    timeout_s: float = 60.0
    agent: str = ""  # who asked: for the worker's log
    version: int = 0
    tier: str | None = None  # the asking agent's tier: the stream it goes back to if handed back

    @property
    def tag(self) -> str:
        return f"{self.server.name}.{self.tool}" if self.op == "call" else f"{self.server.name} (list)"

    @property
    def writes(self) -> bool:
        """A call that may change the world and is not safe to make twice."""
        return (
            self.op == "call" and self.server.effects_of(self.tool) == "write" and not self.server.idempotent(self.tool)
        )

    def encode(self) -> str:
        data: dict[str, Any] = {
            "kind": TOOL_KIND,
            "run": self.run,
            "ticket": self.ticket,
            "op": self.op,
            "name": self.server.name,
            "server": self.server.to_entry(),
            "inputs": dict(self.inputs),
            "agent": self.agent,
            "version": self.version,
        }
        if self.tier is not None:
            data["tier"] = self.tier
        if self.op == "call":
            data.update(tool=self.tool, arguments=dict(self.arguments), timeout_s=self.timeout_s)
        return dumps(data, ensure_ascii=False, compact=True)


def decode_tool_work(data: Mapping[str, Any]) -> ToolWork:
    """The item :meth:`ToolWork.encode` wrote, from its parsed JSON; ``ValueError`` for anything else."""
    try:
        name = str(data["name"])
        op = str(data["op"])
        if op not in ("list", "call"):
            raise ValueError(f"unknown op {op!r}")
        server = tool_servers_from_data({name: dict(data["server"])})[name]
        return ToolWork(
            run=str(data["run"]),
            ticket=str(data["ticket"]),
            op="call" if op == "call" else "list",
            server=server,
            inputs=dict(data.get("inputs") or {}),
            tool=str(data.get("tool", "")),
            arguments=dict(data.get("arguments") or {}),
            timeout_s=float(data.get("timeout_s", 60.0)),
            agent=str(data.get("agent", "")),
            version=int(data.get("version", 0)),
            tier=str(data["tier"]) if data.get("tier") is not None else None,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a tool work item: {type(exc).__name__}: {exc}") from exc


@dataclass(slots=True)
class ToolAnswer:
    """What a worker answers to a :class:`ToolWork`."""

    ticket: str
    worker: str
    ok: bool = True
    text: str = ""  # a call's answer, as the model will read it
    is_error: bool = False  # the tool reported a failure (the model is told)
    data: Any = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # a listing's tools (ToolSpec.to_data)
    error: str | None = None  # the server could not answer: the agent fails with this
    hint: str | None = None
    in_doubt: bool = False  # a write that may have happened: not made again

    def encode(self, work: ToolWork) -> str:
        data: dict[str, Any] = {"ticket": self.ticket, "worker": self.worker, "ok": self.ok}
        if work.op == "list":
            data["tools"] = self.tools
        else:
            data.update(text=self.text, is_error=self.is_error)
            if self.data is not None:
                data["data"] = self.data
        if self.error is not None:
            data.update(error=self.error, hint=self.hint or "")
        if self.in_doubt:
            data["in_doubt"] = True
        return encode_notice(TOOL_KIND, work.agent or work.server.name, work.version, **data)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ToolAnswer:
        return cls(
            ticket=str(data.get("ticket", "")),
            worker=str(data.get("worker", "?")),
            ok=bool(data.get("ok", False)),
            text=str(data.get("text", "")),
            is_error=bool(data.get("is_error", False)),
            data=data.get("data"),
            tools=[dict(tool) for tool in data.get("tools") or ()],
            error=data.get("error"),
            hint=data.get("hint") or None,
            in_doubt=bool(data.get("in_doubt", False)),
        )
