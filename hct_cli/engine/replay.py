"""The replay order of a resumed segment: journaled results arrive in the order they first did.

A resume re-performs the score, answering calls from the journal. The conductor is single-threaded
and each decision it makes (which commit a stale read loses to, who is granted a hold lock first,
whether a speculation is squashed, when a downbeat checkpoints) is a function of the order in
which results arrive. Answered at once, journaled results would arrive in the order their calls
happen to be restored, which is not the order they first arrived in; the rebuilt run would then
make other coherence decisions, render other prompts and pay for calls the journal already holds.

So the results of a resumed segment are delivered in the journal's order: a journaled result
(its ``turn``) only once every result journaled before it was delivered, one per loop turn, as
they once came; a result that is not in the journal (a call made anew) only once the journaled
ones are all delivered, since it first arrived after all of them (a kill loses the last open
transaction, never one in the middle). If the next journaled result is never asked for (the run
went another way: a call failed, or it waits for something that cannot come), nothing but this
order could move the run; then the order is given up, everything waiting is delivered, and the
run goes on as it would without it (a ``replay_order`` event says which).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Arrival", "ReplayOrder"]

#: A result's identity in the journal: (agent, version, purpose).
Arrival = tuple[str, int, str]

Emit = Callable[..., None]  # (kind, station, version, **data)


class ReplayOrder:
    """Delivers a resumed segment's arrivals in the journal's order, then everything else."""

    def __init__(
        self,
        order: Sequence[tuple[Arrival, float]],
        idle: Callable[[], bool],
        clock: Callable[[], float],
        emit: Emit | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._order = [arrival for arrival, _ in order]
        self._times = [at for _, at in order]
        self._expected = set(self._order)
        self._clock = clock  # this segment's time, in seconds
        self._on_end = on_end
        self.now_s = 0.0  # the run's timeline: when the result delivered last first arrived
        self._first: tuple[float, float] | None = None  # the first new call: (timeline, clock)
        self._next = 0
        self._idle = idle  # True when nothing but this order can move the run
        self._emit = emit
        self._turns: dict[Arrival, asyncio.Future[None]] = {}
        self._held: deque[Callable[[], None]] = deque()  # new arrivals, in the order they came
        self._open: list[asyncio.Future[None]] = []  # handed out, maybe not resolved yet
        self._scheduled = False
        self.active = bool(self._order)

    @property
    def delivered(self) -> int:
        return self._next

    @property
    def waiting(self) -> int:
        """Tasks blocked on this order now (the idle check does not count them as moving)."""
        self._open = [future for future in self._open if not future.done()]
        return len(self._open)

    def turn(self, arrival: Arrival) -> asyncio.Future[None] | None:
        """A future that resolves when ``arrival``, a journaled result, may be delivered; None: at once."""
        if not self.active or arrival not in self._expected or arrival in self._turns:
            return None
        future = asyncio.get_running_loop().create_future()
        self._turns[arrival] = future
        self._open.append(future)
        self._soon()
        return future

    def delay(self) -> float:
        """How long a call made anew now waits before it goes. Journaled results are delivered in
        no time, so calls made anew while they are would all start together; each waits instead
        until as long after the first of them as it was first issued after it, and the results
        of those calls (which first arrived after every journaled one) come in their first order."""
        if not self.active:
            return 0.0
        now = self._clock()
        if self._first is None:
            self._first = (self.now_s, now)
            return 0.0
        timeline, clock = self._first
        return max(0.0, (self.now_s - timeline) - (now - clock))

    def hold(self, deliver: Callable[[], None]) -> bool:
        """A result not in the journal: True when it is held (``deliver`` runs later), False: now."""
        if not self.active:
            return False
        self._held.append(deliver)
        self._soon()
        return True

    def wait(self) -> asyncio.Future[None] | None:
        """A future for a result not in the journal awaited in place (a judge's); None: at once."""
        if not self.active:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._open.append(future)
        self._held.append(lambda: None if future.done() else future.set_result(None))
        self._soon()
        return future

    def _soon(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._step)

    def _step(self) -> None:
        """Deliver the next journaled result if it is asked for; one per loop turn, as they came."""
        self._scheduled = False
        if not self.active:
            self._release_held()
            return
        if self._next >= len(self._order):
            self._finish("drained")
            return
        arrival = self._order[self._next]
        future = self._turns.pop(arrival, None)
        if future is not None:
            self.now_s = max(self.now_s, self._times[self._next])
            self._next += 1
            self._expected.discard(arrival)
            if not future.done():
                future.set_result(None)
            self._soon()
            return
        if self._idle():
            self._finish("diverged", arrival)

    def poke(self) -> None:
        """Something that may have moved the run ended (a call, a check): look again."""
        if self.active:
            self._soon()

    def _finish(self, how: str, expected: Arrival | None = None) -> None:
        self.active = False
        if self._on_end is not None:
            self._on_end()
        if self._emit is not None:
            data: dict[str, Any] = {"how": how, "delivered": self._next, "journaled": len(self._order)}
            # Where this segment's clock lies on the run's timeline: the next resume's order.
            timeline, clock = self._first if self._first is not None else (self.now_s, self._clock())
            data["offset_s"] = round(timeline - clock, 6)
            if expected is not None:
                data["expected"] = f"{expected[0]}@{expected[1]}" + ("" if expected[2] == "call" else f" {expected[2]}")
            self._emit("replay_order", None, 0, **data)
        # Whatever still waits goes in the journal's order, then what was held.
        for arrival in self._order[self._next :]:
            future = self._turns.pop(arrival, None)
            if future is not None and not future.done():
                future.set_result(None)
        self._release_held()

    def _release_held(self) -> None:
        """Held arrivals go one per loop turn, in the order they came."""
        if self._held:
            self._held.popleft()()
            if self._held:
                asyncio.get_running_loop().call_soon(self._release_held)
