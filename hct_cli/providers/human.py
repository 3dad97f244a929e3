"""A person's decision on a held result: approve or reject, with a timeout and a default.

A decision may come from any of three places, whichever answers first:

* the conductor (the TUI) in this process, through :meth:`HumanDesk.decide`;
* another shell, with ``hct approve RUN AGENT`` / ``hct reject RUN AGENT``, which record it in
  ``$HCT_HOME``'s database; the desk polls for it;
* this terminal, at a prompt, when the run is in plain mode on a terminal.

:class:`HumanProvider` puts a call to the same desk: the person's decision is its result.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from dataclasses import dataclass
from typing import IO, Any

from hct_cli.call_result import CallResult
from hct_cli.providers.base import CallRequest, ProviderError, timeout_for

__all__ = ["Asked", "HumanDesk", "HumanProvider"]

_EXCERPT = 600


def _parse(answer: str) -> str | None:
    word = answer.strip().lower()
    if word in ("y", "yes", "a", "approve"):
        return "approve"
    if word in ("n", "no", "r", "reject"):
        return "reject"
    return None


@dataclass(frozen=True)
class Asked:
    """A question the desk is asking a person now."""

    version: int
    output: Any
    deadline: float | None  # the event loop's clock; None waits for ever


class HumanDesk:
    """Collects decisions for one run."""

    def __init__(
        self,
        run_id: str,
        db: sqlite3.Connection | None = None,
        *,
        terminal: bool = False,
        poll_s: float = 0.2,
        stream: IO[str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.db = db
        self.terminal = terminal
        self.poll_s = poll_s
        self.stream = stream or sys.stderr
        self._decisions: dict[tuple[str, int], tuple[str, str]] = {}
        self._seen: dict[str, int] = {}
        self.waiting: dict[str, Asked] = {}  # agent -> what it is asked about now (the TUI shows it)

    def decide(self, agent: str, version: int, verdict: str, note: str = "") -> None:
        """Record a decision made in this process (the TUI) on ``agent@version``'s result."""
        self._decisions[(agent, version)] = (verdict, note or "decided in the conductor")

    def _recorded(self, agent: str, version: int) -> tuple[str, str] | None:
        if (agent, version) in self._decisions:
            return self._decisions.pop((agent, version))
        if self.db is None:
            return None
        from hct_cli.providers.approvals import next_verdict

        found = next_verdict(self.db, self.run_id, agent, self._seen.get(agent, 0))
        if found is None:
            return None
        self._seen[agent] = found[0]
        return found[1], found[2] or "decided with hct approve/reject"

    async def ask(
        self, agent: str, version: int, output: Any, timeout_s: float | None, default: str
    ) -> tuple[bool, str]:
        """Wait for a decision on ``agent``'s result: (approved, why)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        self.waiting[agent] = Asked(version, output, deadline)
        typed: asyncio.Future[str] | None = self._prompt(agent, version, output) if self.terminal else None
        try:
            while True:
                decision = self._recorded(agent, version)
                if decision is None and typed is not None and typed.done():
                    verdict = _parse(typed.result())
                    if verdict is not None:
                        decision = (verdict, "decided at the terminal")
                    else:
                        self.stream.write("please answer y (approve) or n (reject): ")
                        self.stream.flush()
                        typed = self._prompt(agent, version, output, again=True)
                if decision is not None:
                    return decision[0] == "approve", decision[1]
                if deadline is not None and loop.time() >= deadline:
                    return default == "approve", f"no decision within {timeout_s:g}s: {default} by default"
                await asyncio.sleep(self.poll_s)
        finally:
            self.waiting.pop(agent, None)
            self._decisions.pop((agent, version), None)  # one made as the question timed out
            if typed is not None and not typed.done():
                typed.cancel()
                loop.remove_reader(sys.stdin.fileno())

    def _prompt(self, agent: str, version: int, output: Any, *, again: bool = False) -> asyncio.Future[str]:
        """Ask at the terminal; the future resolves with the line typed."""
        loop = asyncio.get_running_loop()
        if not again:
            text = str(output)
            shown = text if len(text) <= _EXCERPT else text[:_EXCERPT] + " ..."
            self.stream.write(
                f"\nfermata: {agent}@{version} waits for your approval:\n{shown}\n"
                f"approve? [y/n] (or from another shell: hct approve {self.run_id} {agent}) "
            )
            self.stream.flush()
        typed: asyncio.Future[str] = loop.create_future()
        fd = sys.stdin.fileno()

        def readable() -> None:
            loop.remove_reader(fd)
            if not typed.done():
                typed.set_result(sys.stdin.readline())

        loop.add_reader(fd, readable)
        return typed


class HumanProvider:
    """Calls answered by a person at a :class:`HumanDesk`: approve or reject what the call asks.

    The result's output is the verdict (``"approve"`` or ``"reject"``), its model ``"human"``,
    at no cost. No decision within the agent's timeout (``timeout_s``, else its tempo's) fails the
    call with :class:`ProviderError`, as a model that does not answer does.
    """

    def __init__(self, desk: HumanDesk) -> None:
        self.desk = desk

    async def call(self, request: CallRequest) -> CallResult:
        started = time.perf_counter()
        agent = request.agent.name
        timeout = timeout_for(request)
        try:
            approved, _ = await asyncio.wait_for(
                self.desk.ask(agent, request.version, request.user_text, None, "reject"), timeout
            )
        except TimeoutError as exc:
            raise ProviderError(
                f"agent {agent!r}: no person answered within {timeout:g}s",
                hint=f"Answer with `hct approve {self.desk.run_id} {agent}` (or hct reject), "
                "or give the agent a larger timeout_s.",
            ) from exc
        return CallResult(
            output="approve" if approved else "reject", model="human", latency_s=time.perf_counter() - started
        )
