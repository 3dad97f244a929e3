"""Speculation past a held result: which dependents fire on it, and what a squash throws away.

A dependent captures a held result when its producer speculates (``speculate: true``, or
``auto`` with the gate's 2-bit predictor saying "passes") or when its own edge is ``attacca``.
It is then *unconfirmed* on that producer: its own result is buffered until the producer
commits, and a squash returns it to waiting. The performer does the rest (events, release,
cancelling calls, letting go of shared state); this module keeps the bookkeeping and counters.
"""

from __future__ import annotations

from hct_cli.bus.base import Broadcast
from hct_cli.engine.station import Station, by_priority
from hct_cli.store.cache import Predictors

__all__ = ["Speculation"]


class Speculation:
    """The speculation of one run: predictors, hits, squashes and the squashed cost."""

    def __init__(self, score: str, predictors: Predictors) -> None:
        self.score = score
        self.predictors = predictors
        self.hits = 0  # dependents that fired on a held result which then committed
        self.squashes = 0
        self.squashed_cost = 0.0

    def _gate(self, station: Station) -> str:
        return f"{self.score}/{station.name}"

    def verdict(self, station: Station, passed: bool) -> None:
        """A fermata decided: train the gate's predictor (``speculate: auto`` only)."""
        if station.agent.speculate == "auto":
            self.predictors.update(self._gate(station), passed)

    def capture(self, producer: Station, message: Broadcast) -> tuple[list[Station], list[Station]]:
        """Dependents that take ``producer``'s held result now, and those of them now ready."""
        agent = producer.agent
        if agent.vamp is not None:
            return [], []  # the result dependents need is the vamp's last pass, not this one
        mode = agent.speculate
        predicted = mode is True or (mode == "auto" and self.predictors.predict(self._gate(producer)))
        captured: list[Station] = []
        for dependent in producer.dependents:
            wants = predicted or dependent.agent.attacca
            if not wants or dependent.agent.downbeat or dependent.agent.tacet_if:
                continue  # a downbeat checkpoints, and a tacet_if decides, on committed results only
            if dependent.record.status != "waiting" or producer.name in dependent.operands:
                continue
            dependent.operands[producer.name] = message
            dependent.waiting -= 1
            dependent.unconfirmed.add(producer.name)
            captured.append(dependent)
        producer.spec_out.extend(captured)
        ready = sorted((d for d in captured if d.waiting == 0), key=by_priority)
        return captured, ready

    def confirm(self, dependent: Station, producer: str) -> bool:
        """``producer`` committed: True when ``dependent`` had already fired on that result."""
        if producer not in dependent.unconfirmed:
            return False
        dependent.unconfirmed.discard(producer)
        dependent.record.speculated.add(producer)  # it did not wait for the gate (the critical path)
        self.hits += 1
        return True

    def squash(self, producer: Station) -> list[tuple[Station, float]]:
        """``producer``'s held result will not commit: each dependent that fired on it goes back
        to waiting for it, its buffered result thrown away; with the cost thrown away."""
        squashed: list[tuple[Station, float]] = []
        for dependent in producer.spec_out:
            if producer.name not in dependent.unconfirmed:
                continue
            dependent.unconfirmed.discard(producer.name)
            dependent.operands.pop(producer.name, None)
            dependent.waiting += 1
            cost = 0.0
            if dependent.buffered is not None:
                cost = dependent.buffered.result.cost_usd
                dependent.record.squashed.append(dependent.buffered)
                dependent.buffered = None
            self.squashes += 1
            self.squashed_cost += cost
            squashed.append((dependent, cost))
        producer.spec_out = []
        return squashed
