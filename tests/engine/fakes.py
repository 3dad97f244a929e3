"""Test doubles shared by the engine tests: providers the test drives, score builders, and loop helpers.

Nothing here measures the wall clock: ``settle`` and ``until`` yield to the event loop a bounded
number of times, and ``eventually`` bounds a wait on timers (a desk's poll, a gate's timeout) by
seconds without asserting any duration, so tests assert orderings and causality, never durations.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import Hands, Performer, RunResult
from hct_cli.engine.gates import Gatekeeper
from hct_cli.events import Event
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score_text
from hct_cli.providers.base import CallRequest, Provider, ProviderError
from hct_cli.score.model import build_score
from hct_cli.store.cache import Predictors

__all__ = [
    "GatedProvider",
    "Recording",
    "Scripted",
    "conduct",
    "eventually",
    "gatechecks",
    "held_gates",
    "index_of",
    "kinds",
    "performer",
    "program_of",
    "run",
    "score",
    "seen",
    "settle",
    "until",
]


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

    def has_started(self, name: str) -> Callable[[], bool]:
        """The condition "NAME's call has started", for :func:`until`; NAME is bound now, so a
        loop can build one per turn."""
        return lambda: name in self.started

    def has_in_flight(self, count: int) -> Callable[[], bool]:
        """The condition "COUNT calls are in flight", for :func:`until`; COUNT is bound now."""
        return lambda: len(self.in_flight) == count

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


class Scripted:
    """Answers agent NAME with the next output of its script (the last repeats), by default
    ``<NAME@version>``; raises a ``ProviderError`` instead where ``fail`` says so.

    Calls of a held agent (``hold``) wait until the test releases it. It records every request,
    and the (agent, version) of every call that finished or was cancelled.
    """

    def __init__(
        self,
        script: Mapping[str, Any] | None = None,
        *,
        cost: float = 0.001,
        fail: Callable[[CallRequest], bool] | None = None,
    ) -> None:
        self.script = {k: list(v) if isinstance(v, list | tuple) else [v] for k, v in (script or {}).items()}
        self.cost = cost
        self.fail = fail
        self.requests: list[CallRequest] = []
        self.finished: list[tuple[str, int]] = []
        self.cancelled: list[tuple[str, int]] = []
        self._holds: dict[str, asyncio.Event] = {}

    @classmethod
    def perform(
        cls, program: Program, script: Mapping[str, Any] | None = None, **options: Any
    ) -> tuple[Scripted, list[Event], RunResult]:
        """Run ``program`` on a new ``Scripted(script)``: the provider, every event, and the result."""
        provider = cls(script)
        events: list[Event] = []
        return provider, events, run(program, provider, events, **options)

    def hold(self, *names: str) -> None:
        for name in names:
            self._holds[name] = asyncio.Event()

    def release(self, *names: str) -> None:
        for name in names:
            self._holds[name].set()

    def of(self, name: str) -> list[CallRequest]:
        return [r for r in self.requests if r.agent.name == name]

    async def call(self, request: CallRequest) -> CallResult:
        name = request.agent.name
        n = len(self.of(name))
        self.requests.append(request)
        try:
            held = self._holds.get(name)
            if held is not None:
                await held.wait()
            else:
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.cancelled.append((name, request.version))
            raise
        self.finished.append((name, request.version))
        if self.fail is not None and self.fail(request):
            raise ProviderError(f"{name}@{request.version} could not make sense of its input")
        outputs = self.script.get(name)
        output = outputs[min(n, len(outputs) - 1)] if outputs else f"<{name}@{request.version}>"
        return CallResult(output, request.model, 3, 5, self.cost, 0.0, request.tier)


class Recording:
    """Wraps a provider and keeps every request it served, in order."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.requests: list[CallRequest] = []

    def request(self, name: str, version: int, purpose: str = "call") -> CallRequest:
        """The last request served for NAME@VERSION with that purpose."""
        return next(
            r for r in reversed(self.requests) if (r.agent.name, r.version, r.purpose) == (name, version, purpose)
        )

    async def call(self, request: CallRequest) -> CallResult:
        self.requests.append(request)
        return await self.inner.call(request)


@pytest.fixture(autouse=True)
def gatechecks(resources: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``python: gatechecks:NAME`` predicates importable, their record empty.

    A test module uses it with ``from tests.engine.fakes import gatechecks as gatechecks``.
    """
    monkeypatch.syspath_prepend(str(resources))
    module = importlib.import_module("gatechecks")
    module.reset()
    return module


def _score_data(agents: Mapping[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    return {"hct": 1, "name": "t", **sections, "agents": dict(agents)}


def program_of(agents: Mapping[str, Any], **sections: Any) -> Program:
    """Compile a score given as the data a YAML score would load to."""
    return compile_score(build_score(_score_data(agents, sections)))


def score(agents: Mapping[str, Any], **sections: Any) -> Program:
    """Load (schema, lint) and compile a score given as the data its YAML would hold."""
    return compile_score(load_score_text(json.dumps(_score_data(agents, sections)), "<test>"))


def performer(
    program: Program,
    provider: Any,
    events: list[Event] | None = None,
    *,
    allow_exec: bool = False,
    gates: Gatekeeper | None = None,
    judge_provider: Provider | None = None,
    predictors: Predictors | None = None,
    **options: Any,
) -> Performer:
    """A Performer that sends every call to ``provider`` and appends every event to ``events``.

    With ``allow_exec`` and no ``gates`` of the test's own, its Gatekeeper runs python checks.
    ``options`` are the Performer's own keywords (``inputs``, ``options``, ``resume``, ``bus``).
    """
    if allow_exec and gates is None:
        gates = Gatekeeper(tiers=program.tiers, allow_exec=True)
    hands = Hands(lambda spec: provider, judge_provider=judge_provider, gates=gates, predictors=predictors)
    return Performer(program, hands, observers=[events.append] if events is not None else [], **options)


def run(program: Program, provider: Any, events: list[Event] | None = None, **options: Any) -> RunResult:
    return asyncio.run(performer(program, provider, events, **options).run())


def conduct(p: Performer, cues: Callable[[], Awaitable[None]]) -> RunResult:
    """Run ``p`` while ``cues`` acts on it (releases holds, decides gates, asserts on the way),
    then wait for the run to end and return its result."""

    async def scenario() -> RunResult:
        task = asyncio.create_task(p.run())
        await cues()
        return await task

    return asyncio.run(scenario())


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


async def eventually(condition: Callable[[], bool], what: str, limit_s: float = 20.0) -> None:
    """Wait until ``condition`` holds (a bound, not a measurement: nothing asserts durations)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.001)


async def held_gates(gatechecks: ModuleType, *outputs: str) -> None:
    """Wait until the ``gatechecks:held`` gates waiting for a verdict are those on ``outputs``, in any order."""
    expected = sorted(outputs)
    await eventually(lambda: sorted(gatechecks.pending()) == expected, f"the held gates on {expected} are pending")


def kinds(events: list[Event], kind: str, station: str | None = None) -> list[Event]:
    """The events of that kind (at that station, when given), in order."""
    return [e for e in events if e.kind == kind and (station is None or e.station == station)]


def station_of(event: Event) -> str:
    """The station of an event that belongs to one (an issue, a cue, a result...)."""
    assert event.station is not None, f"a {event.kind} event without a station"
    return event.station


def seen(events: list[Event], kind: str, station: str) -> bool:
    return any(e.kind == kind and e.station == station for e in events)


def index_of(events: list[Event], kind: str, station: str) -> int:
    return next(i for i, e in enumerate(events) if e.kind == kind and e.station == station)
