"""Functional units: how many calls a tier may have in flight, and its rpm/tpm windows."""

from __future__ import annotations

from collections import deque

__all__ = ["Unit"]


class Unit:
    """A tier's functional units: a concurrency limit and optional rpm/tpm windows."""

    __slots__ = ("in_flight", "limit", "requests", "rpm", "tokens", "tpm")

    def __init__(self, limit: int | None, rpm: int | None, tpm: int | None) -> None:
        self.limit = limit
        self.rpm = rpm
        self.tpm = tpm
        self.in_flight = 0
        self.requests: deque[float] = deque()
        self.tokens: deque[tuple[float, int]] = deque()

    def wait_s(self, now: float, tokens: int) -> float:
        """0 when a call may start now, else how long until the rate limits allow it."""
        while self.requests and now - self.requests[0] >= 60.0:
            self.requests.popleft()
        while self.tokens and now - self.tokens[0][0] >= 60.0:
            self.tokens.popleft()
        wait = 0.0
        if self.rpm is not None and len(self.requests) >= self.rpm:
            wait = max(wait, self.requests[0] + 60.0 - now)
        if self.tpm is not None and self.tokens:
            used = sum(n for _, n in self.tokens)
            if used + tokens > self.tpm:
                wait = max(wait, self.tokens[0][0] + 60.0 - now)
        return wait

    def take(self, now: float, tokens: int) -> None:
        """Count a call that starts now against the rpm/tpm windows (``in_flight`` is the caller's)."""
        if self.rpm is not None:
            self.requests.append(now)
        if self.tpm is not None:
            self.tokens.append((now, tokens))
