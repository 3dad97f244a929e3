"""The runtime side of a reservation station: what the perform loop touches per agent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hct_cli.coherence import Mode, lock_modes
from hct_cli.compile import StationSpec
from hct_cli.engine.result import AgentRecord
from hct_cli.engine.units import Unit
from hct_cli.providers.base import Provider
from hct_cli.routing import Route

if TYPE_CHECKING:
    from jinja2 import Template

__all__ = ["Station", "by_priority"]


class Station:
    """One station at run time: its record, unit, provider, operands, coherence and vamp state."""

    __slots__ = (
        "agent",
        "dependents",
        "gate_failures",
        "hold",
        "hold_since",
        "iteration",
        "locked",
        "modes",
        "name",
        "operands",
        "provider",
        "record",
        "replays",
        "reserved",
        "route",
        "shared",
        "snapshot",
        "spec",
        "task",
        "template",
        "unit",
        "version",
        "waiting",
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
        self.dependents: tuple[Station, ...] = ()
        self.task: asyncio.Task[None] | None = None
        # Coherence: does it touch shared state; what it read (key -> version); replays so far;
        # whether it runs under hold locks, holds them now, and since when it waits for them.
        agent = spec.agent
        self.shared = bool(agent.reads or agent.writes or agent.appends)
        self.modes: dict[str, Mode] = lock_modes(agent.reads, agent.writes, agent.appends) if self.shared else {}
        self.snapshot: dict[str, int] = {}
        self.replays = 0
        self.hold = False
        self.locked = False
        self.hold_since: float | None = None
        self.iteration = 1  # vamp pass
        self.gate_failures = 0  # fermata checks failed so far


def by_priority(station: Station) -> tuple[int, float, int]:
    return station.spec.priority
