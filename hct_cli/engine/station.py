"""The runtime side of a reservation station: what the perform loop touches per agent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hct_cli.bus.base import Broadcast
from hct_cli.engine.coherence import Mode, lock_modes
from hct_cli.engine.result import AgentRecord
from hct_cli.engine.units import Unit
from hct_cli.program.compile import StationSpec
from hct_cli.program.routing import Route
from hct_cli.providers.base import Provider

if TYPE_CHECKING:
    from jinja2 import Template

    from hct_cli.program.window import Window

__all__ = ["Station", "by_priority"]


class Station:
    """One station at run time: record, unit, provider, operands, coherence, gate and speculation state."""

    __slots__ = (
        "agent",
        "buffered",
        "commit_seq",
        "confirmation",
        "dependents",
        "feedback",
        "gate_failures",
        "gate_task",
        "hold",
        "hold_since",
        "iteration",
        "locked",
        "modes",
        "name",
        "operands",
        "provider",
        "queued",
        "record",
        "replays",
        "reserved",
        "restored",
        "route",
        "shared",
        "snapshot",
        "spec",
        "spec_out",
        "tacet_checked",
        "task",
        "template",
        "tooled",
        "unconfirmed",
        "unit",
        "version",
        "waiting",
        "window",
    )

    def __init__(self, spec: StationSpec, record: AgentRecord, unit: Unit, provider: Provider) -> None:
        self.spec = spec
        self.name = spec.name
        self.agent = spec.agent
        self.record = record
        self.unit = unit
        self.provider = provider
        self.route: Route = spec.route  # where the next call goes (the governor may move it)
        self.reserved = 0.0  # the worst case held against the budget while a call is in flight
        self.waiting = len(spec.tags)
        self.operands = record.captured  # cue -> the broadcast captured (output and version)
        self.version = 0
        self.template: Template | None = None
        self.window: tuple[Route, Window | None] | None = None  # L1's window for the route it was worked out for
        self.dependents: tuple[Station, ...] = ()
        self.task: asyncio.Task[None] | None = None
        # Coherence: does it touch shared state; what it read (key -> version); replays so far;
        # whether it runs under hold locks, holds them now, and since when it waits for them.
        agent = spec.agent
        self.shared = bool(agent.reads or agent.writes or agent.appends)
        self.tooled = bool(agent.tools) and agent.kind == "llm"  # its calls run the tool loop
        self.modes: dict[str, Mode] = lock_modes(agent.reads, agent.writes, agent.appends) if self.shared else {}
        self.snapshot: dict[str, int] = {}
        self.replays = 0
        self.hold = False
        self.locked = False
        self.hold_since: float | None = None
        self.iteration = 1  # vamp pass
        self.gate_failures = 0  # fermata checks failed so far
        self.feedback: str | None = None  # why the last result failed its gate, told to the next attempt
        self.gate_task: asyncio.Task[None] | None = None  # a check that takes time (python, judge, human)
        self.tacet_checked = False
        self.queued = False  # waiting in the issue queue for a unit
        self.restored = False  # the call in flight is answered from the journal (a resume)
        self.commit_seq = 0  # when it committed, counted in commits since the run began
        # Speculation: producers whose results it took before they committed; dependents it
        # released on a held result; its own result, buffered until those producers commit.
        self.unconfirmed: set[str] = set()
        self.spec_out: list[Station] = []
        self.buffered: Broadcast | None = None
        # A write call of its tool loop waits on this while it is unconfirmed (see engine.tooling).
        self.confirmation: asyncio.Future[None] | None = None


def by_priority(station: Station) -> tuple[int, float, int]:
    return station.spec.priority
