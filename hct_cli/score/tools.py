"""The score's tool servers, and which of their tools an agent may reach.

A score's ``tools:`` section names MCP servers (a local program over stdio, or a streamable HTTP
endpoint); an agent's ``tools:`` list names the tools it may call. The model here is pure data:
starting servers and calling tools is :mod:`hct_cli.tools`'.

Effects default to ``write``: a tool nobody declared harmless is treated as one that changes the
world, so it is never run for speculative work, never cached, and journaled before it is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "BASE_ENVIRONMENT",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_STEPS",
    "Effects",
    "ScriptedCall",
    "ToolRule",
    "ToolServer",
    "qualified",
    "resolve_tools",
    "split_ref",
    "tool_servers_from_data",
]

Effects = Literal["read", "write"]
Placement = Literal["conductor", "worker"]

#: Calls in flight to one server when the score does not say.
DEFAULT_CONCURRENCY = 4
#: Model-tool rounds of an agent when the score does not say (write tools require it said).
DEFAULT_MAX_STEPS = 8
#: The only variables of hct's own environment a server inherits, besides its declared ``env``.
BASE_ENVIRONMENT = ("PATH", "HOME", "LANG")


@dataclass(frozen=True)
class ToolRule:
    """What the score says of one tool, beyond its server's defaults."""

    effects: Effects | None = None
    idempotent: bool = False


@dataclass(frozen=True)
class ToolServer:
    """One MCP server of the score."""

    name: str
    command: tuple[str, ...] = ()  # stdio: the argv that starts it (items may be templates)
    url: str | None = None  # streamable HTTP
    env: tuple[str, ...] = ()
    headers_env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    effects: Effects = "write"
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float | None = None
    tools: Mapping[str, ToolRule] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""
    on: Placement = "conductor"  # where it runs in distributed mode (its calls are journaled by the conductor)

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "http" if self.url is not None else "stdio"

    def effects_of(self, tool: str) -> Effects:
        rule = self.tools.get(tool)
        return rule.effects if rule is not None and rule.effects is not None else self.effects

    def idempotent(self, tool: str) -> bool:
        rule = self.tools.get(tool)
        return rule is not None and rule.idempotent

    def to_data(self) -> dict[str, Any]:
        """The entry as the score wrote it (what ``tools.allow`` fingerprints)."""
        data: dict[str, Any] = {"command": list(self.command)} if self.command else {"url": self.url}
        if self.env:
            data["env"] = list(self.env)
        if self.headers_env:
            data["headers_env"] = dict(self.headers_env)
        return data

    def to_entry(self) -> dict[str, Any]:
        """The whole entry as score data (what :func:`tool_servers_from_data` reads back): what a
        worker needs to start and call a server ``on: worker``."""
        data = self.to_data()
        data.update(effects=self.effects, concurrency=self.concurrency, on=self.on)
        if self.timeout_s is not None:
            data["timeout_s"] = self.timeout_s
        rules = {}
        for tool, rule in self.tools.items():
            entry: dict[str, Any] = {"idempotent": rule.idempotent}
            if rule.effects is not None:
                entry["effects"] = rule.effects
            rules[tool] = entry
        if rules:
            data["tools"] = rules
        if self.description:
            data["description"] = self.description
        return data


@dataclass(frozen=True)
class ScriptedCall:
    """One tool call of the simulated model's script: ``simulate: {tool_calls: [[...], ...]}``."""

    tool: str
    args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def split_ref(ref: str) -> tuple[str | None, str]:
    """``server.tool`` -> (server, tool); a bare ``tool`` -> (None, tool)."""
    server, dot, tool = ref.partition(".")
    return (server, tool) if dot else (None, ref)


def qualified(server: str, tool: str) -> str:
    return f"{server}.{tool}"


def resolve_tools(
    refs: Iterable[str], servers: Mapping[str, ToolServer], listed: Mapping[str, Iterable[str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The qualified tools ``refs`` reach, given each server's listed tools (``listed``, by server).

    Returns (qualified names in order, problems as (ref, reason)). ``server.*`` reaches every tool
    the server lists; a bare name must be offered by exactly one server.
    """
    reached: list[str] = []
    problems: list[tuple[str, str]] = []
    for ref in refs:
        server, tool = split_ref(ref)
        if server is not None:
            if server not in servers:
                problems.append((ref, f"no tool server is named {server!r}"))
                continue
            names = list(listed.get(server, ()))
            if tool == "*":
                reached.extend(qualified(server, name) for name in names)
            elif server in listed and tool not in names:
                problems.append((ref, f"server {server!r} has no tool {tool!r}"))
            else:
                reached.append(qualified(server, tool))
            continue
        offering = [name for name, tools in listed.items() if tool in set(tools)]
        unlisted = [name for name in servers if name not in listed]
        if len(offering) > 1:
            problems.append((ref, f"tool {tool!r} is offered by {', '.join(sorted(offering))}: qualify it"))
        elif unlisted and (offering or len(unlisted) > 1):
            continue  # a server's tools are unknown: which one offers it cannot be told yet
        elif offering or unlisted:
            reached.append(qualified((offering or unlisted)[0], tool))
        else:
            problems.append((ref, f"no server offers a tool {tool!r}"))
    return list(dict.fromkeys(reached)), problems


def tool_servers_from_data(data: Mapping[str, Any]) -> Mapping[str, ToolServer]:
    """The ``tools:`` section of schema-valid score data."""
    servers = {}
    for name, spec in data.items():
        rules = {
            tool: ToolRule(rule.get("effects"), bool(rule.get("idempotent", False)))
            for tool, rule in spec.get("tools", {}).items()
        }
        servers[name] = ToolServer(
            name=name,
            command=tuple(spec.get("command", ())),
            url=spec.get("url"),
            env=tuple(spec.get("env", ())),
            headers_env=MappingProxyType(dict(spec.get("headers_env", {}))),
            effects=spec.get("effects", "write"),
            concurrency=spec.get("concurrency", DEFAULT_CONCURRENCY),
            timeout_s=spec.get("timeout_s"),
            tools=MappingProxyType(rules),
            description=spec.get("description", ""),
            on=spec.get("on", "conductor"),
        )
    return MappingProxyType(servers)
