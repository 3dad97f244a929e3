"""The conductor's side of tool servers ``on: worker``: sessions whose server runs on a worker.

:class:`RemoteTools` lends the run's tool box a :class:`WorkerSession` for each server ``on:
worker``. The box keeps what it keeps for any server: the functional unit (``concurrency``
calls in flight, over all workers), the tool list fetched once, and the tool loop around it
journals each call before the box is asked to make it. The session turns a listing or a call
into a :class:`~hct_cli.distributed.tool_work.ToolWork` on the calling agent's tier stream and
waits for its answer on the CDB stream.

One worker per run is a server's *home*: the one that answered its listing started it, and
every later call goes to that worker's own stream, so a server that keeps state between calls
sees one process. If the home goes silent, the call goes to the tier's stream and whoever takes
it starts the server afresh and becomes its home. A worker never makes a write call twice: an
item that reaches a second worker (the first died holding it) comes back ``in_doubt``, and the
agent stops as ``needs_attention``, as after a conductor's crash.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from hct_cli.bus.wire import Result
from hct_cli.distributed.remote import Issuer
from hct_cli.distributed.tool_work import TOOL_KIND, ToolAnswer, ToolWork, command_inputs
from hct_cli.errors import BusError, InDoubtWriteError, ToolError
from hct_cli.score.tools import ToolServer
from hct_cli.tools.base import ToolReply, ToolSpec

__all__ = ["RemoteTools", "WorkerSession"]


class RemoteTools:
    """Tool work for one run's servers ``on: worker``: issued on the bus, answered by workers."""

    def __init__(self) -> None:
        self.bus: Issuer | None = None
        self._waiting: dict[str, asyncio.Future[ToolAnswer]] = {}
        self._lost: BusError | None = None
        self.duplicates = 0  # answers for no item in flight (a redelivered item answered twice)

    def attach(self, bus: Issuer) -> None:
        self.bus = bus
        bus.listen(self._heard)
        bus.when_lost(self._on_lost)

    def session(self, server: ToolServer, inputs: Mapping[str, Any], tier: str | None) -> WorkerSession:
        return WorkerSession(self, server, command_inputs(server, inputs), tier)

    async def ask(self, work: ToolWork, tier: str | None, home: str | None) -> ToolAnswer:
        """Issue ``work`` (to ``home``'s own stream when it has one) and wait for its answer."""
        if self._lost is not None:
            raise self._lost
        if self.bus is None:
            raise BusError("the distributed bus is not open", hint="Open it before the run (Session.play).")
        answer: asyncio.Future[ToolAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[work.ticket] = answer
        try:
            await self.bus.issue(work.encode(), tier, home)
            return await answer
        finally:
            self._waiting.pop(work.ticket, None)

    def ticket(self) -> str:
        return secrets.token_hex(8)

    def _heard(self, result: Result) -> None:
        if result.kind != TOOL_KIND:
            return
        answer = self._waiting.get(str(result.data.get("ticket", "")))
        if answer is None or answer.done():
            self.duplicates += 1
            return
        answer.set_result(ToolAnswer.from_data(result.data))

    def _on_lost(self, error: BusError) -> None:
        self._lost = error
        for answer in self._waiting.values():
            if not answer.done():
                answer.set_exception(error)


class WorkerSession:
    """One server ``on: worker`` as the run's tool box sees it (a :class:`~hct_cli.tools.base.ToolSession`)."""

    def __init__(self, remote: RemoteTools, server: ToolServer, inputs: Mapping[str, Any], tier: str | None) -> None:
        self.remote = remote
        self.server = server
        self.inputs = dict(inputs)
        self.tier = tier
        self.home: str | None = None  # the worker that runs it for this run

    def _work(self, op: str, **fields: Any) -> ToolWork:
        bus = self.remote.bus
        run = bus.run_id if bus is not None else ""
        kind: Literal["list", "call"] = "call" if op == "call" else "list"
        return ToolWork(run, self.remote.ticket(), kind, self.server, self.inputs, tier=self.tier, **fields)

    async def list_tools(self) -> list[ToolSpec]:
        answer = await self.remote.ask(self._work("list"), self.tier, self.home)
        self._raise_for(answer, "cannot list its tools")
        self.home = answer.worker
        server = self.server
        specs = []
        for tool in answer.tools:
            name = str(tool.get("name", ""))
            if not name:
                continue
            specs.append(
                ToolSpec(
                    server.name,
                    name,
                    str(tool.get("description") or ""),
                    dict(tool.get("input_schema") or {"type": "object"}),
                    server.effects_of(name),  # what the conductor's score says, never the worker's
                    server.idempotent(name),
                )
            )
        return specs

    async def call(self, tool: str, arguments: Mapping[str, Any], timeout_s: float) -> ToolReply:
        work = self._work("call", tool=tool, arguments=dict(arguments), timeout_s=timeout_s)
        answer = await self.remote.ask(work, self.tier, self.home)
        if answer.in_doubt:
            raise InDoubtWriteError(
                answer.error or f"write call {self.server.name}.{tool} was lost with the worker making it",
                hint=answer.hint
                or f"Check whether {self.server.name}.{tool} did it; then resume with --resend-writes if it did not.",
            )
        self._raise_for(answer, f"cannot call {tool}")
        self.home = answer.worker  # whoever answered runs it now (a new home after the old one went silent)
        return ToolReply(answer.text, answer.is_error, answer.data, worker=answer.worker)

    def _raise_for(self, answer: ToolAnswer, doing: str) -> None:
        if answer.ok:
            return
        raise ToolError(
            f"tool server {self.server.name!r} (on worker {answer.worker}) {doing}: {answer.error or 'no reason given'}",
            hint=answer.hint or "Read the worker's log for the server's output.",
        )

    async def aclose(self) -> None:
        """Nothing to stop here: its worker stops the server when the run ends."""
