"""What the collaborators of a run share: its stations, clock, events, status and spend.

The perform loop is split by concern (:mod:`~hct_cli.engine.dispatch` decides what issues next,
:mod:`~hct_cli.engine.calls` makes the calls, :mod:`~hct_cli.engine.lifecycle` handles a result
as it lands); what each of them reads and moves of the run as a whole lives here, once, so that
none of them owns what the others need. So do the ledgers every concern consults: shared state
(coherence), the governor (budget) and the replay order (resume).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hct_cli.engine.governor import Governor
from hct_cli.engine.replay import ReplayOrder
from hct_cli.engine.result import AgentRecord
from hct_cli.engine.shared import SharedState
from hct_cli.engine.station import Station
from hct_cli.events import Event, Observer
from hct_cli.program.compile import Program
from hct_cli.redact import Redactor

__all__ = ["RunState"]


class RunState:
    """One run's shared facts. Mutable scalars (status, counters, the clock) are read through it
    by every collaborator, so none keeps a stale copy."""

    __slots__ = (
        "caesura",
        "commits",
        "done",
        "frame",
        "governor",
        "inputs",
        "interruption",
        "last_settle",
        "loop",
        "n",
        "observers",
        "paused",
        "program",
        "records",
        "redacting",
        "redactor",
        "replay",
        "restored_usd",
        "settled",
        "shared",
        "spent_before",
        "spent_usd",
        "stations",
        "status",
        "stop_issuing",
        "t0",
        "timer",
        "writes",
        "writes_checkpointed",
    )

    def __init__(
        self,
        program: Program,
        stations: dict[str, Station],
        inputs: Mapping[str, Any],
        frame: str,
        observers: Sequence[Observer],
        redactor: Redactor,
        spent_before_usd: float,
    ) -> None:
        self.program = program
        self.stations = stations
        self.records: dict[str, AgentRecord] = {name: station.record for name, station in stations.items()}
        self.n = len(stations)
        self.inputs = dict(inputs)
        self.frame = frame
        self.observers = list(observers)
        # Secrets of the environment never reach a result or an event, so no observer sees them.
        self.redactor = redactor
        self.redacting = bool(redactor)
        # What the run cost: every result paid for, in this segment and (journaled) the earlier ones.
        self.spent_before = spent_before_usd
        self.spent_usd = spent_before_usd
        self.restored_usd = 0.0  # of it, what journaled results delivered again in this segment cost
        self.status = "completed"
        self.stop_issuing = False
        self.paused = False
        self.interruption: str | None = None  # why the run ended interrupted, when it was not asked to
        self.caesura: dict[str, Any] | None = None
        self.settled = 0
        self.commits = 0
        # Write calls of tool loops, in the order made; a caesura lists those after its checkpoint
        # (it rolls back results, not the world).
        self.writes: list[dict[str, Any]] = []
        self.writes_checkpointed = 0
        self.t0: float | None = None
        self.last_settle = 0.0  # when the last result committed or failed, or the run stopped: the makespan
        self.done: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None  # a wake-up when a rate limit allows the next call
        # Set by the performer once built (they need the clock and the events above), the loop
        # when the run starts.
        self.loop: asyncio.AbstractEventLoop
        self.shared: SharedState
        self.governor: Governor
        self.replay: ReplayOrder

    # -- events ----------------------------------------------------------------------------

    def now(self) -> float:
        return time.perf_counter() - self.t0 if self.t0 is not None else 0.0

    def emit(self, kind: str, station: str | None = None, version: int = 0, **data: Any) -> None:
        if self.redacting:
            data = self.redactor.data(data)
        event = Event(kind, self.now(), station, version, data)
        for observer in self.observers:
            observer(event)

    def emit_if_observed(self) -> Callable[..., None] | None:
        """:meth:`emit` when the run has observers at all, else None (a part that then stays silent)."""
        return self.emit if self.observers else None

    # -- what every concern asks -------------------------------------------------------------

    def prompt_tokens(self, station: Station) -> int:
        """Prompt tokens expected of the next call, operands included (about four characters a token)."""
        figures = station.agent.simulate
        if figures.prompt_tokens is not None:
            return figures.prompt_tokens
        prompt = station.agent.prompt or ""
        size = len(self.frame) + len(prompt)
        if station.template is not None:
            size += sum(len(str(message.result.output)) for message in station.operands.values())
            size += sum(len(str(value)) for name, value in self.inputs.items() if f"inputs.{name}" in prompt)
            size += sum(len(str(self.shared.value(key))) for key in station.agent.reads)
        return max(1, size // 4)

    def only_replay_moves(self) -> bool:
        """Whether nothing but the replay order can move the run: every call, check and timer is
        done or waits for its turn (then a journaled result that is never asked for ends the order)."""
        if self.paused or self.timer is not None:
            return False
        live = 0
        for station in self.stations.values():
            for task in (station.task, station.gate_task):
                if task is not None and not task.done():
                    live += 1
        return live <= self.replay.waiting

    def replay_ended(self) -> None:
        """Earlier segments paid for results this one does not deliver again (squashed by a
        caesura, warm-ups, a path that went another way): the governor counts them from now on."""
        self.governor.spent += max(0.0, self.spent_before - self.restored_usd)

    # -- how the run ends ------------------------------------------------------------------

    def check_done(self) -> None:
        if self.settled >= self.n and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def interrupt(self, reason: str) -> None:
        """Stop issuing and end the run ``interrupted``: what committed is journaled, what was in
        flight is lost, and ``--resume`` continues from there."""
        if self.done is None or self.done.done():
            return
        self.status = "interrupted"
        self.stop_issuing = True
        self.last_settle = self.now()
        self.interruption = reason
        if self.observers:
            self.emit("interrupt", reason=reason)
        self.done.set_result(None)

    def fault(self, exc: Exception) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
