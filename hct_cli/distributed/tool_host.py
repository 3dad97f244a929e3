"""A worker's tool servers: the servers ``on: worker`` of the runs it serves.

:class:`ToolHost` answers :class:`~hct_cli.distributed.tool_work.ToolWork` items. Each (run,
server) gets a :class:`~hct_cli.tools.toolbox.McpToolBox` of its own, so a server starts on the
first item that needs it, under the same rules as at a conductor, but with *this* machine's
consent and environment: a stdio server runs only when the worker was started with
``--allow-exec`` or its entry is on this machine's allow list (``hct tools --trust SCORE``); it
inherits ``PATH``, ``HOME``, ``LANG`` and its declared ``env`` from the worker; its process is on
the worker's leash. The servers of a run stop when the run ends (:meth:`ToolHost.retire`) and
when the worker stops.

A write call is made at most once: an item delivered a second time (the worker that held it
died, or ran out of drain time, mid-call) is answered ``in_doubt`` instead of being made again,
unless its tool is declared ``idempotent``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping

from hct_cli.distributed.tool_work import ToolAnswer, ToolWork
from hct_cli.errors import ExecNotAllowedError, HctError
from hct_cli.redact import Redactor
from hct_cli.score.tools import ToolServer
from hct_cli.tools.base import ToolSpec
from hct_cli.tools.toolbox import McpToolBox

__all__ = ["ToolHost", "in_doubt"]

_EXEC_HINT = (
    "start the worker with --allow-exec, or trust the score's tools on the worker's machine "
    "(hct tools --trust SCORE there)"
)


def in_doubt(work: ToolWork, worker: str, why: str) -> ToolAnswer:
    """The answer to a write call that may have been made already: never made again."""
    tool = f"{work.server.name}.{work.tool}"
    return ToolAnswer(
        work.ticket,
        worker,
        ok=False,
        in_doubt=True,
        error=f"write call {tool} of agent {work.agent!r} {why}: it may have happened",
        hint=f"Check whether {tool} did it. If it did not, resume the run with --resend-writes; a tool "
        "that is safe to send twice can say idempotent: true in the score.",
    )


class ToolHost:
    """The tool servers one worker runs, by (run, server)."""

    def __init__(
        self,
        worker: str,
        *,
        allow_exec: bool = False,
        trusted: Callable[[ToolServer], bool] = lambda server: False,
        environ: Mapping[str, str] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.worker = worker
        self._allow_exec = allow_exec
        self._trusted = trusted
        self._environ = environ
        self._redact = redactor or Redactor.from_environ()
        self._boxes: dict[tuple[str, str], McpToolBox] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> list[tuple[str, str]]:
        """(run, server) of every box that has started something."""
        return sorted(key for key, box in self._boxes.items() if box.started)

    def _box(self, work: ToolWork) -> McpToolBox:
        key = (work.run, work.server.name)
        box = self._boxes.get(key)
        if box is None:
            box = McpToolBox(
                {work.server.name: work.server},
                inputs=work.inputs,
                allow_exec=self._allow_exec,
                trusted=self._trusted,
                environ=self._environ,
            )
            self._boxes[key] = box
        return box

    async def answer(self, work: ToolWork, deliveries: int = 1) -> ToolAnswer:
        """List or call, as ``work`` asks; ``deliveries``: how many workers were given it."""
        if deliveries > 1 and work.writes:
            return in_doubt(work, self.worker, "reached this worker after another took it and stopped answering")
        box = self._box(work)
        try:
            if work.op == "list":
                specs = await box.list_server(work.server.name)
                return ToolAnswer(work.ticket, self.worker, tools=[spec.to_data() for spec in specs])
            spec = ToolSpec(work.server.name, work.tool)
            reply = await box.call(spec, work.arguments, work.timeout_s)
        except ExecNotAllowedError as exc:
            return ToolAnswer(work.ticket, self.worker, ok=False, error=self._redact.text(exc.message), hint=_EXEC_HINT)
        except HctError as exc:
            return ToolAnswer(
                work.ticket, self.worker, ok=False, error=self._redact.text(exc.message), hint=exc.hint or None
            )
        return ToolAnswer(
            work.ticket,
            self.worker,
            text=self._redact.text(reply.text),  # this machine's secrets never leave it
            is_error=reply.is_error,
            data=self._redact.data(reply.data) if reply.data is not None else None,
        )

    def retire(self, runs: Iterable[str]) -> None:
        """Stop, in the background, the servers of every run not in ``runs`` (they ended)."""
        current = set(runs)
        for key in [key for key in self._boxes if key[0] not in current]:
            box = self._boxes.pop(key)
            task = asyncio.get_running_loop().create_task(box.aclose())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Stop every server (the worker is stopping)."""
        boxes, self._boxes = list(self._boxes.values()), {}
        with contextlib.suppress(Exception):
            await asyncio.gather(*(box.aclose() for box in boxes), *self._closing, return_exceptions=True)
