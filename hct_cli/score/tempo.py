"""The tempo table: everything a tempo means, in one place.

A score marks each agent with a tempo, from ``largo`` (slow, patient) to ``presto`` (urgent).
The tempo decides its issue order (presto first), how long one call may take, how long a
follower may wait for a prompt cache its leader is writing, and (with the agent's dynamics)
which model tier the default routing table picks. Every layer that reads a tempo reads it here,
so a tempo's figures cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["TEMPI", "TEMPOS", "Tempo", "TempoSpec"]

Tempo = Literal["largo", "andante", "moderato", "allegro", "presto"]


@dataclass(frozen=True)
class TempoSpec:
    """One tempo's figures."""

    name: str
    nominal_s: float  # nominal time per call
    rank: int  # issue order: lower goes first (presto first, largo last)
    timeout_s: float  # per-call timeout: urgent work gives up sooner (an agent's ``timeout_s`` overrides it)
    listen_wait_s: float | None  # how long a follower may wait for the cache: 0 never, None until it is written
    route: tuple[str, str, str, str, str]  # the default tier for each dynamics, pp p mf f ff


#: Tempi from slowest to fastest.
TEMPI: Mapping[str, TempoSpec] = MappingProxyType(
    {
        #                            nominal rank timeout wait   pp       p        mf     f           ff
        "largo": TempoSpec("largo", 60.0, 0, 300.0, None, ("local", "local", "mid", "mid", "frontier")),
        "andante": TempoSpec("andante", 30.0, -1, 180.0, None, ("local", "local", "mid", "mid", "frontier")),
        "moderato": TempoSpec("moderato", 15.0, -2, 120.0, None, ("local", "mid", "mid", "frontier", "frontier")),
        "allegro": TempoSpec("allegro", 5.0, -3, 60.0, 2.0, ("local", "mid", "mid", "frontier", "frontier")),
        "presto": TempoSpec("presto", 1.0, -4, 30.0, 0.0, ("local", "mid", "mid", "frontier", "frontier")),
    }
)

#: Tempi from slowest to fastest, with their nominal time per call in seconds.
TEMPOS: Mapping[str, float] = MappingProxyType({name: spec.nominal_s for name, spec in TEMPI.items()})
