"""Test doubles shared by the engine tests: a provider the test drives, and loop helpers.

Nothing here waits on the wall clock: helpers yield to the event loop a bounded number of
times, so tests assert orderings and causality, never durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from hct_cli.compile import Program, compile_score
from hct_cli.engine import Event
from hct_cli.providers.base import CallRequest, CallResult
from hct_cli.score.model import build_score

__all__ = ["GatedProvider", "index_of", "program_of", "seen", "settle", "until"]


class GatedProvider:
    """A provider whose call for agent NAME returns only once the test opens NAME's gate.

    It records the order calls started and finished, and what was in flight or finished when
    each call started.
    """

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.finished: list[str] = []
        self.in_flight: set[str] = set()
        self.peak = 0
        self.in_flight_at_start: dict[str, frozenset[str]] = {}
        self.finished_at_start: dict[str, tuple[str, ...]] = {}
        self.requests: dict[str, CallRequest] = {}
        self.cancelled: list[str] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    def open(self, *names: str) -> None:
        for name in names:
            self.gate(name).set()

    async def call(self, request: CallRequest) -> CallResult:
        name = request.agent.name
        self.in_flight_at_start[name] = frozenset(self.in_flight)
        self.finished_at_start[name] = tuple(self.finished)
        self.requests[name] = request
        self.started.append(name)
        self.in_flight.add(name)
        self.peak = max(self.peak, len(self.in_flight))
        try:
            await self.gate(name).wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.in_flight.discard(name)
        self.finished.append(name)
        return CallResult(output=f"<{name}>", model=request.model, prompt_tokens=3, completion_tokens=5)


async def settle(rounds: int = 50) -> None:
    """Let every runnable task run for a while (yields to the loop; no wall-clock waiting)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], what: str, rounds: int = 2000) -> None:
    """Yield to the loop until ``condition`` holds; fail if it never does."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


def program_of(agents: Mapping[str, Any], **sections: Any) -> Program:
    """Compile a score given as the data a YAML score would load to."""
    return compile_score(build_score({"hct": 1, "name": "t", **sections, "agents": dict(agents)}))


def seen(events: list[Event], kind: str, station: str) -> bool:
    return any(e.kind == kind and e.station == station for e in events)


def index_of(events: list[Event], kind: str, station: str) -> int:
    return next(i for i, e in enumerate(events) if e.kind == kind and e.station == station)
