"""Compile a score into a program: reservation stations, the tag graph, routes, critical path.

Pure and synchronous: no I/O, no event loop. The engine runs what this produces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hct_cli.program.routing import Route, resolve_route, tiers_of
from hct_cli.score.model import Agent, Score, TierSpec
from hct_cli.score.tempo import TEMPI

__all__ = ["Program", "StationSpec", "compile_score", "expected_latency_s"]


#: Typical latency per tier (seconds) when a score gives no ``simulate.latency_ms``.
TIER_LATENCY_S: Mapping[str, tuple[float, float]] = MappingProxyType(
    {"local": (0.3, 1.2), "mid": (0.6, 2.4), "frontier": (1.2, 4.8)}
)
_DEFAULT_LATENCY_S = (0.6, 2.4)


@dataclass(frozen=True, slots=True)
class StationSpec:
    """The static part of one reservation station."""

    name: str
    index: int
    agent: Agent
    tags: tuple[str, ...]  # agents whose results this station waits for
    dependents: tuple[str, ...]  # stations waiting for this one's result
    route: Route
    expected_s: float  # expected latency of one call
    remaining_s: float  # longest expected path from this station to the end, itself included
    priority: tuple[int, float, int]  # issue order: tempo, then longest remaining path, then index


@dataclass(frozen=True)
class Program:
    """A compiled score, ready to perform."""

    score: Score
    stations: Mapping[str, StationSpec]
    order: tuple[str, ...]  # a topological order (declaration order where free)
    critical_path_s: float  # expected, from expected latencies
    tiers: Mapping[str, TierSpec]

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(name for name in self.order if not self.stations[name].tags)


def expected_latency_s(agent: Agent, tier: str | None) -> tuple[float, float]:
    """The latency range a call of ``agent`` is expected to take."""
    if agent.simulate.latency_ms is not None:
        low, high = agent.simulate.latency_ms
        return low / 1000.0, high / 1000.0
    return TIER_LATENCY_S.get(tier or "", _DEFAULT_LATENCY_S)


def _tags(score: Score, agent: Agent, declared: list[str]) -> tuple[str, ...]:
    """An agent's cues, plus every earlier agent when it is a downbeat."""
    if not agent.downbeat:
        return agent.cues
    extra = [name for name in declared[: agent.index] if name not in agent.cues]
    return (*agent.cues, *extra)


def _topological(tags: Mapping[str, tuple[str, ...]], declared: list[str]) -> tuple[str, ...]:
    waiting = {name: len(set(tags[name])) for name in declared}
    dependents: dict[str, list[str]] = {name: [] for name in declared}
    for name in declared:
        for tag in set(tags[name]):
            dependents[tag].append(name)
    order = [name for name in declared if waiting[name] == 0]
    for name in order:  # the list grows while it is walked
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                order.append(dependent)
    if len(order) != len(declared):
        stuck = sorted(set(declared) - set(order))
        raise ValueError(f"cue cycle among {stuck[:5]}")  # lint reports cycles before compile
    return tuple(order)


def compile_score(score: Score) -> Program:
    """Turn a linted score into stations, a tag graph and resolved routes."""
    declared = list(score.agents)
    tags = {name: _tags(score, agent, declared) for name, agent in score.agents.items()}
    order = _topological(tags, declared)
    dependents: dict[str, list[str]] = {name: [] for name in declared}
    for name in order:
        for tag in dict.fromkeys(tags[name]):
            dependents[tag].append(name)
    routes = {name: resolve_route(score, agent) for name, agent in score.agents.items()}
    expected = {}
    for name, agent in score.agents.items():
        low, high = expected_latency_s(agent, routes[name].tier)
        expected[name] = (low + high) / 2
    remaining: dict[str, float] = {}
    for name in reversed(order):
        tail = max((remaining[d] for d in dependents[name]), default=0.0)
        remaining[name] = expected[name] + tail
    stations = {
        name: StationSpec(
            name=name,
            index=score.agents[name].index,
            agent=score.agents[name],
            tags=tuple(dict.fromkeys(tags[name])),
            dependents=tuple(dependents[name]),
            route=routes[name],
            expected_s=expected[name],
            remaining_s=remaining[name],
            priority=(TEMPI[score.agents[name].tempo].rank, -remaining[name], score.agents[name].index),
        )
        for name in order
    }
    critical = max(remaining.values(), default=0.0)
    return Program(score, MappingProxyType(stations), order, critical, MappingProxyType(tiers_of(score)))
