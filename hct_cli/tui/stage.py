"""What the conductor's keys act on: a live run, or a journaled run played back.

A stage plays (``play``) while the app draws; the keys pause and resume it, decide a human
fermata and call a caesura. A replay has nothing to decide and nothing to stop: it says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hct_cli.events import Event

if TYPE_CHECKING:
    from hct_cli.engine.perform import Performer
    from hct_cli.engine.result import RunResult
    from hct_cli.providers.human import HumanDesk
    from hct_cli.tui.ensemble import Ensemble

__all__ = ["LiveStage", "ReplayStage", "Stage", "journal_events"]


@dataclass(frozen=True)
class Question:
    """A result held for a person's decision."""

    agent: str
    version: int
    output: Any = None


class Stage(Protocol):
    live: bool

    @property
    def paused(self) -> bool: ...

    async def play(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def waiting(self) -> list[Question]:
        """The results a person is being asked about now, oldest first."""

    def decide(self, agent: str, version: int, verdict: str) -> str | None:
        """Record a person's verdict on ``agent@version``; a reason when it cannot be taken."""

    def caesura(self) -> str | None:
        """Stop the run at its last checkpoint; a reason when it cannot."""


class LiveStage:
    """A run in this process: the performer plays, the desk takes a person's decisions."""

    live = True

    def __init__(
        self,
        performer: Performer,
        desk: HumanDesk | None = None,
        *,
        play: Callable[[], Awaitable[RunResult]] | None = None,
    ) -> None:
        self.performer = performer
        self.desk = desk
        self._play = play or performer.run  # distributed mode wraps the run in its bus session
        self.result: RunResult | None = None

    @property
    def paused(self) -> bool:
        return self.performer.paused

    async def play(self) -> None:
        try:
            self.result = await self._play()
        except asyncio.CancelledError:
            self.result = self.performer.interrupted()
            raise

    def pause(self) -> None:
        self.performer.pause()

    def resume(self) -> None:
        self.performer.resume()

    def waiting(self) -> list[Question]:
        if self.desk is None:
            return []
        return [Question(agent, asked.version, asked.output) for agent, asked in list(self.desk.waiting.items())]

    def decide(self, agent: str, version: int, verdict: str) -> str | None:
        if self.desk is None:
            return "this run takes no decisions"
        self.desk.decide(agent, version, verdict)
        return None

    def caesura(self) -> str | None:
        return None if self.performer.caesura() else "the run has already ended"


def journal_events(rows: Iterable[Mapping[str, Any]]) -> list[Event]:
    """A run's journaled events on one time line from zero: each segment (a resume) starts where
    the previous one ended, whatever time passed between them."""
    events: list[Event] = []
    offset = base = 0.0
    segment = None
    last = 0.0
    for row in rows:
        at = float(row["at"])  # wall-clock seconds
        if row["segment"] != segment:
            segment, base, offset = row["segment"], at, last
        moment = offset + max(0.0, at - base)
        last = max(last, moment)
        events.append(Event(row["kind"], moment, row["station"], int(row["version"] or 0), row["data"]))
    return events


class ReplayStage:
    """A journaled run played back at ``speed`` times its own pace."""

    live = False

    def __init__(
        self, events: list[Event], ensemble: Ensemble, speed: float = 1.0, final_status: str | None = None
    ) -> None:
        self.events = events
        self.final_status = final_status  # the journal's word when no run_end was journaled (a crash)
        self.ensemble = ensemble
        self.speed = speed
        self._position = 0.0  # run time reached, in the run's own seconds
        self._resumed = asyncio.Event()
        self._resumed.set()
        ensemble.clock = self.position

    @property
    def paused(self) -> bool:
        return not self._resumed.is_set()

    def position(self) -> float:
        if self.ensemble.end_time is not None:
            return self.ensemble.end_time
        return self._position

    async def play(self) -> None:
        loop = asyncio.get_running_loop()
        base = loop.time()  # wall time at which run time 0 would have played
        turn = loop.time()
        for event in self.events:
            if loop.time() - turn > 0.01:  # behind schedule: let the screen and the keys in
                await asyncio.sleep(0)
                turn = loop.time()
            while True:
                if not self._resumed.is_set():
                    paused_at = loop.time()
                    await self._resumed.wait()
                    base += loop.time() - paused_at
                due = base + event.time_s / self.speed
                delay = due - loop.time()
                if delay <= 0:
                    break
                self._position = (loop.time() - base) * self.speed
                await asyncio.sleep(min(delay, 0.05))  # wakes often enough to move the clock
                turn = loop.time()
            self._position = max(self._position, event.time_s)
            self.ensemble(event)
        self._position = self.events[-1].time_s if self.events else 0.0
        if not self.ensemble.finished:  # the journal ends without a run_end: a crash or a kill
            self.ensemble(Event("run_end", self._position, data={"status": self.final_status or "crashed"}))

    def pause(self) -> None:
        if self._resumed.is_set():
            self._resumed.clear()
            self.ensemble.paused = True

    def resume(self) -> None:
        if not self._resumed.is_set():
            self._resumed.set()
            self.ensemble.paused = False

    def waiting(self) -> list[Question]:
        return [Question(agent, version) for agent, version in self.ensemble.pending.items()]

    def decide(self, agent: str, version: int, verdict: str) -> str | None:
        return "a replay cannot decide: the run is over"

    def caesura(self) -> str | None:
        return "a replay cannot stop the run: it is over"
