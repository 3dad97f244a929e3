"""The tool servers of one run: started on first use, listed once, called on their functional units.

:class:`McpToolBox` is what the engine holds for a run. A server starts the first time one of its
tools is listed or called (concurrent first callers share one start, under the server's lock);
its tool list is fetched once; each call waits on the server's functional unit (a semaphore of
``concurrency``). The box decides what reaches a server: a stdio server's environment is only
:data:`~hct_cli.score.tools.BASE_ENVIRONMENT` plus the variables it declares, its ``command``
templates see ``inputs`` and nothing else, and it starts only with ``--allow-exec`` or a trusted
entry; an HTTP server's headers come from the variables ``headers_env`` names. In distributed
mode a server ``on: worker`` is reached through :class:`~hct_cli.tools.base.RemoteTools` instead:
its worker starts it, under the worker's own consent and environment.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from hct_cli.errors import ExecNotAllowedError, ToolError
from hct_cli.score.model import Agent
from hct_cli.score.template import check_template, compile_template, render_compiled
from hct_cli.score.tools import BASE_ENVIRONMENT, ToolServer, resolve_tools, split_ref
from hct_cli.tools.base import RemoteTools, ToolReply, ToolSession, ToolSpec

__all__ = ["EXEC_HINT", "McpToolBox", "render_command", "server_environment"]

EXEC_HINT = "pass --allow-exec, or trust this score's tools with `hct tools --trust SCORE`"


def server_environment(server: ToolServer, environ: Mapping[str, str]) -> dict[str, str]:
    """What a stdio server inherits: the base variables and its declared ``env``, when set."""
    names = (*BASE_ENVIRONMENT, *server.env)
    return {name: environ[name] for name in dict.fromkeys(names) if name in environ}


def server_headers(server: ToolServer, environ: Mapping[str, str]) -> dict[str, str]:
    """The headers of an HTTP server, each from the variable ``headers_env`` names."""
    headers = {}
    for header, variable in server.headers_env.items():
        if variable not in environ:
            raise ToolError(
                f"tool server {server.name!r} needs the variable {variable} (for its {header} header), which is not set",
                hint=f"set {variable} in the environment hct runs in",
            )
        headers[header] = environ[variable]
    return headers


def render_command(server: ToolServer, inputs: Mapping[str, Any]) -> list[str]:
    """``command`` with its ``{{ inputs.NAME }}`` templates rendered in the sandbox (inputs only)."""
    argv = []
    for item in server.command:
        if "{" not in item:
            argv.append(item)
            continue
        references, problems = check_template(item)
        if problems:
            raise ToolError(
                f"tool server {server.name!r}: its command item {item!r} is not a valid template: {problems[0].message}",
                hint=problems[0].hint,
            )
        for reference in references:
            if reference.namespace != "inputs":
                raise ToolError(
                    f"tool server {server.name!r}: its command may use inputs only, not {reference.namespace}.{reference.name}",
                    hint="write {{ inputs.NAME }} and give the value as an input of the run",
                )
            if reference.name not in inputs:
                raise ToolError(
                    f"tool server {server.name!r}: its command needs the input {reference.name!r}, which the run lacks",
                    hint=f"give it: --input {reference.name}=VALUE",
                )
        argv.append(render_compiled(compile_template(item), {"inputs": dict(inputs)}))
    return argv


class McpToolBox:
    """The servers of one run (the :class:`~hct_cli.tools.base.ToolBox` of the engine)."""

    def __init__(
        self,
        servers: Mapping[str, ToolServer],
        *,
        inputs: Mapping[str, Any],
        allow_exec: bool,
        trusted: Callable[[ToolServer], bool] = lambda server: False,
        environ: Mapping[str, str] | None = None,
        remote: RemoteTools | None = None,
    ) -> None:
        self.servers = dict(servers)
        self._inputs = dict(inputs)
        self._allow_exec = allow_exec
        self._trusted = trusted
        self._environ = dict(os.environ if environ is None else environ)
        self._locks = {name: asyncio.Lock() for name in self.servers}
        self._units = {name: asyncio.Semaphore(max(1, server.concurrency)) for name, server in self.servers.items()}
        self._sessions: dict[str, ToolSession] = {}
        self._listed: dict[str, tuple[ToolSpec, ...]] = {}
        self._closed = False
        self._remote = remote  # distributed mode: where servers ``on: worker`` run

    @property
    def started(self) -> bool:
        """Whether any server of this box has started (and not been stopped)."""
        return bool(self._sessions)

    def load(self) -> None:
        from hct_cli.tools.mcp_client import load_sdk

        load_sdk()

    def _server(self, name: str) -> ToolServer:
        server = self.servers.get(name)
        if server is None:
            known = ", ".join(sorted(self.servers)) or "none"
            raise ToolError(
                f"no tool server is named {name!r} (the score has: {known})",
                hint="name a server of the score's tools: section",
            )
        return server

    async def session(self, name: str, tier: str | None = None) -> ToolSession:
        """The started session of server ``name`` (starting it on first use; ``tier``: see
        :meth:`tools_for`)."""
        server = self._server(name)
        started = self._sessions.get(name)
        if started is not None:
            return started
        async with self._locks[name]:
            started = self._sessions.get(name)
            if started is not None:
                return started
            if self._closed:
                raise ToolError(
                    f"tool server {name!r} cannot start: the run's tools are closed", hint="this is a bug in hct"
                )
            started = await self._open(server, tier)
            self._sessions[name] = started
            return started

    async def _open(self, server: ToolServer, tier: str | None) -> ToolSession:
        if server.on == "worker" and self._remote is not None:  # its worker decides whether it may run
            return self._remote.session(server, self._inputs, tier)
        from hct_cli.tools.mcp_client import open_session  # the SDK loads when a server starts

        if server.transport == "http":
            return await open_session(server, (), {}, server_headers(server, self._environ))
        if not (self._allow_exec or self._trusted(server)):
            raise ExecNotAllowedError(
                f"tool server {server.name!r} runs a program on this machine ({server.command[0] if server.command else '?'})",
                hint=EXEC_HINT,
            )
        argv = render_command(server, self._inputs)
        return await open_session(server, argv, server_environment(server, self._environ), {})

    async def list_server(self, name: str, tier: str | None = None) -> tuple[ToolSpec, ...]:
        """Every tool server ``name`` offers (fetched once per run)."""
        listed = self._listed.get(name)
        if listed is not None:
            return listed
        session = await self.session(name, tier)
        async with self._locks[name]:
            listed = self._listed.get(name)
            if listed is None:
                listed = tuple(await session.list_tools())
                self._listed[name] = listed
            return listed

    async def tools_for(self, agent: Agent, tier: str | None = None) -> tuple[ToolSpec, ...]:
        refs = list(agent.tools)
        wanted: list[str] = []
        for ref in refs:
            server, _ = split_ref(ref)
            names = [server] if server is not None else list(self.servers)
            wanted.extend(name for name in names if name in self.servers)
        listings = {name: await self.list_server(name, tier) for name in dict.fromkeys(wanted)}
        qualified, problems = resolve_tools(
            refs, self.servers, {name: [spec.name for spec in specs] for name, specs in listings.items()}
        )
        if problems:
            ref, reason = problems[0]
            raise ToolError(
                f"agent {agent.name!r} names the tool {ref!r}: {reason}",
                hint="run `hct tools SCORE` to see what each server offers, and fix the agent's tools: list",
            )
        by_name = {spec.qualified: spec for specs in listings.values() for spec in specs}
        return tuple(by_name[name] for name in qualified if name in by_name)

    async def call(self, spec: ToolSpec, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        session = await self.session(spec.server)
        async with self._units[spec.server]:
            return await session.call(spec.name, arguments, timeout_s)

    async def aclose(self) -> None:
        """Stop every server this box started; safe to call twice."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        results = await asyncio.gather(*(session.aclose() for session in sessions), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result

    async def __aenter__(self) -> McpToolBox:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()
