"""Scheduling: when a station that has all its operands is released, and on which unit it issues.

A dispatch policy decides when a ready station is released; :class:`Dispatcher` then issues it
at once if a functional unit of its tier is free (and its rate limits and the budget governor
allow), or queues it by priority until one is. The policies share everything else (stations,
units, providers, bus), so a benchmark that swaps them measures the policy alone.

* ``reactive`` (Tomasulo): release the moment the last operand arrives.
* ``batch`` (supersteps, as LangGraph-style executors do): freeze the ready set, release it,
  wait until every station of it has finished, repeat.
* ``sequential``: one station at a time, in topological order.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from hct_cli.engine.governor import Decision
from hct_cli.engine.station import Station
from hct_cli.engine.units import Unit
from hct_cli.program.compile import StationSpec
from hct_cli.score.model import TierSpec

if TYPE_CHECKING:
    from hct_cli.engine.calls import Calls
    from hct_cli.engine.lifecycle import Lifecycle
    from hct_cli.engine.run_state import RunState

__all__ = ["POLICIES", "Batch", "DispatchPolicy", "Dispatcher", "Reactive", "Sequential", "TierUnits", "make_policy"]

Release = Callable[[str], None]


class DispatchPolicy(Protocol):
    def ready(self, name: str) -> None:
        """``name`` has every operand."""

    def start(self) -> None:
        """Every initially ready station has been reported; begin."""

    def done(self, name: str) -> None:
        """A released station finished (committed, failed or was skipped)."""

    def withdraw(self, name: str) -> None:
        """``name`` is no longer ready (the result it took speculatively was squashed)."""


class Reactive:
    def __init__(self, release: Release, order: Mapping[str, int]) -> None:
        self.release = release

    def ready(self, name: str) -> None:
        self.release(name)

    def start(self) -> None:
        return None

    def done(self, name: str) -> None:
        return None

    def withdraw(self, name: str) -> None:
        return None


class Batch:
    def __init__(self, release: Release, order: Mapping[str, int]) -> None:
        self.release = release
        self.next: list[str] = []
        self.outstanding = 0
        self.supersteps = 0

    def ready(self, name: str) -> None:
        self.next.append(name)

    def start(self) -> None:
        self._superstep()

    def done(self, name: str) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self._superstep()

    def withdraw(self, name: str) -> None:
        if name in self.next:
            self.next.remove(name)

    def _superstep(self) -> None:
        batch, self.next = self.next, []
        if not batch:
            return
        self.supersteps += 1
        self.outstanding = len(batch)
        for name in batch:
            self.release(name)


class Sequential:
    def __init__(self, release: Release, order: Mapping[str, int]) -> None:
        self.release = release
        self.order = order
        self.queue: list[tuple[int, str]] = []
        self.busy = False
        self.started = False

    def ready(self, name: str) -> None:
        heapq.heappush(self.queue, (self.order[name], name))
        if self.started and not self.busy:
            self._next()

    def start(self) -> None:
        self.started = True
        self._next()

    def done(self, name: str) -> None:
        self.busy = False
        self._next()

    def withdraw(self, name: str) -> None:
        self.queue = [item for item in self.queue if item[1] != name]
        heapq.heapify(self.queue)

    def _next(self) -> None:
        if self.queue and not self.busy:
            self.busy = True
            self.release(heapq.heappop(self.queue)[1])


POLICIES: Mapping[str, type[Reactive] | type[Batch] | type[Sequential]] = {
    "reactive": Reactive,
    "batch": Batch,
    "sequential": Sequential,
}


def make_policy(name: str, release: Release, order: Mapping[str, int]) -> DispatchPolicy:
    return POLICIES[name](release, order)


class TierUnits:
    """The functional units of a run: one per tier, and one without limits for the rest."""

    __slots__ = ("free", "tiers")

    def __init__(self, tiers: Mapping[str, TierSpec]) -> None:
        self.tiers = {tier: Unit(spec.concurrency, spec.rpm, spec.tpm) for tier, spec in tiers.items()}
        self.free = Unit(None, None, None)  # models pinned outside any tier, python, shell

    def of_station(self, spec: StationSpec) -> Unit:
        if spec.agent.kind in ("python", "shell"):
            return self.free
        return self.of_tier(spec.route.tier)

    def of_tier(self, tier: str | None) -> Unit:
        return self.tiers.get(tier, self.free) if tier is not None else self.free


class Dispatcher:
    """Issues what the policy releases: now, on its tier's unit (or the one the governor routes
    it to), or later, from a queue ordered by priority, as units free up."""

    __slots__ = ("_calls", "_held_back", "_queue", "lifecycle", "policy", "state", "units")

    def __init__(self, state: RunState, calls: Calls, units: TierUnits, dispatch: str) -> None:
        self.state = state
        self._calls = calls
        self.units = units
        self._queue: list[tuple[tuple[int, float, int], str]] = []
        self._held_back: list[str] = []  # released while paused, in release order
        order = {name: i for i, name in enumerate(state.program.order)}
        self.policy: DispatchPolicy = make_policy(dispatch, self.release, order)
        self.lifecycle: Lifecycle  # set once the lifecycle is built (it releases through this)

    @property
    def queued(self) -> bool:
        """Whether any station waits for a unit."""
        return bool(self._queue)

    def release(self, name: str) -> None:
        """The policy lets ``name`` go: issue it now if a unit is free, else queue it."""
        state = self.state
        station = state.stations[name]
        if state.stop_issuing:
            self.lifecycle.skip(name, "the run stopped issuing")
            return
        if state.paused:  # released in full (tacet check, locks) when the run resumes
            self._held_back.append(name)
            return
        if (
            station.agent.tacet_if is not None
            and not station.tacet_checked
            and self.lifecycle.verdicts.tacet_holds(station)
        ):
            return
        if station.hold and not state.shared.lock(station):
            return  # granted later, in FIFO order, when a holder commits
        if not self._queue and self._try_issue(station):
            return
        station.queued = True
        heapq.heappush(self._queue, (station.spec.priority, name))

    def release_held_back(self) -> None:
        """The run resumes: release what was released while it was paused, then drain the queue."""
        held, self._held_back = self._held_back, []
        stations = self.state.stations
        for name in sorted(held, key=lambda n: stations[n].spec.priority):
            self.release(name)
        self.drain()

    def drain(self) -> None:
        """Issue queued stations, highest priority first, while units allow."""
        state = self.state
        if state.paused:
            return
        blocked: list[tuple[tuple[int, float, int], str]] = []
        while self._queue:
            item = heapq.heappop(self._queue)
            station = state.stations[item[1]]
            if not station.queued:
                continue  # withdrawn while it waited (squashed)
            if state.stop_issuing:
                station.queued = False
                self.lifecycle.skip(item[1], "the run stopped issuing")
                continue
            if self._try_issue(station):
                station.queued = False
            else:
                blocked.append(item)
        for item in blocked:
            heapq.heappush(self._queue, item)

    def _try_issue(self, station: Station) -> bool:
        """Issue ``station`` if its unit allows; False leaves it queued."""
        calls = self._calls
        if calls.recall is not None:
            found = calls.recall.get((station.name, station.version + 1, "call"))
            if found is not None and calls.restore(station, found):
                return True
        unit = station.unit
        decision: Decision | None = None
        governor = self.state.governor
        if station.agent.kind == "llm" and governor.steers(station.name):
            decision = governor.decide(station.spec, self.state.prompt_tokens(station))
            if decision.stop is not None:
                if governor.reserved > 1e-12:
                    return False  # calls in flight may cost less than reserved: decide again when they settle
                self._budget_stop(station, decision.stop)
                return True
            if decision.route.tier != station.route.tier:
                unit = self.units.of_tier(decision.route.tier)
        if unit.limit is not None and unit.in_flight >= unit.limit:
            return False
        if unit.rpm is not None or unit.tpm is not None:
            now = time.perf_counter()
            wait = unit.wait_s(now, station.agent.max_tokens)
            if wait > 0:
                self._wake_in(wait)
                return False
            unit.take(now, station.agent.max_tokens)
        unit.in_flight += 1
        station.unit = unit
        if decision is not None:
            self._apply(station, decision)
        calls.issue(station)
        return True

    def _apply(self, station: Station, decision: Decision) -> None:
        """Route the call as the governor decided and hold its worst case against the budget."""
        for kind, data in decision.events:
            self.state.emit(kind, station.name, station.version + 1, **data)
        station.route = decision.route
        station.reserved = decision.worst_case_usd
        station.record.worst_case_usd = decision.worst_case_usd
        station.record.tier = decision.route.tier
        station.record.route_model = decision.route.model
        self.state.governor.reserve(decision)

    def _budget_stop(self, station: Station, reason: str) -> None:
        """Nothing cheaper fits: stop issuing, keep every result so far."""
        state = self.state
        state.status = "budget_exhausted"
        state.stop_issuing = True
        state.emit("budget_stop", station.name, station.version + 1, reason=reason)
        self.lifecycle.skip(station.name, reason)

    def _wake_in(self, delay: float) -> None:
        state = self.state
        if state.timer is None:

            def wake() -> None:
                state.timer = None
                self.drain()
                state.replay.poke()

            state.timer = state.loop.call_later(delay, wake)
