"""What one call answered: below both the providers that make calls and the bus that carries them.

A provider returns a :class:`CallResult`; the bus carries it, unchanged, inside a
:class:`~hct_cli.bus.base.Broadcast` under the station's tag. Neither layer imports the other
for it, so the figures of a call are defined once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CallResult"]


@dataclass(slots=True)  # not frozen: built once per call on the hot path; the engine redacts its output in place
class CallResult:
    """One call's answer and its figures."""

    output: Any
    model: str | None  # None only for a call that never ran (a failure, a rest)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0  # the call's own latency (drawn when simulated)
    tier: str | None = None  # the tier that answered (a fallback may have moved the call)
    cached: bool = False  # served from the L5 result cache at no cost
    worker: str | None = None  # the ``hct worker`` that made the call (distributed mode)
    cached_tokens: int = 0  # prompt tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # prompt tokens written to it
