"""Dispatch policies: when a station that has all its operands is released to the units.

The policies share everything else (stations, units, providers, bus), so a benchmark that swaps
them measures the policy alone.

* ``reactive`` (Tomasulo): release the moment the last operand arrives.
* ``batch`` (supersteps, as LangGraph-style executors do): freeze the ready set, release it,
  wait until every station of it has finished, repeat.
* ``sequential``: one station at a time, in topological order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["POLICIES", "Batch", "DispatchPolicy", "Reactive", "Sequential", "make_policy"]

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
