"""DVFS routing: tempo x dynamics picks a model tier, as a CPU governor picks a frequency.

The default table sends soft, patient work to the local tier and loud work to the frontier;
a score overrides cells with ``routing.table`` and tiers with ``routing.tiers``, and an agent
bypasses the router with ``model:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from hct_cli.score.model import DYNAMICS, Agent, Score, TierSpec
from hct_cli.score.tempo import TEMPI

__all__ = [
    "DEFAULT_TABLE",
    "DEFAULT_TIERS",
    "TIER_ORDER",
    "Route",
    "fallbacks_of",
    "resolve_route",
    "routing_table",
    "tiers_of",
]

#: Built-in tiers, cheapest first.
DEFAULT_TIERS: Mapping[str, TierSpec] = MappingProxyType(
    {
        "local": TierSpec("local", "ollama/llama3.1"),
        "mid": TierSpec("mid", "gpt-4o-mini"),
        "frontier": TierSpec("frontier", "claude-sonnet-4-5"),
    }
)
TIER_ORDER: tuple[str, ...] = ("local", "mid", "frontier")

#: The default tempo x dynamics -> tier table (25 cells): each tempo's row of the tempo table.
DEFAULT_TABLE: Mapping[tuple[str, str], str] = MappingProxyType(
    {(name, dynamics): tempo.route[i] for name, tempo in TEMPI.items() for i, dynamics in enumerate(DYNAMICS)}
)


@dataclass(frozen=True)
class Route:
    """Where one agent's calls go, and why."""

    tier: str | None
    model: str
    reason: str


def tiers_of(score: Score) -> dict[str, TierSpec]:
    """The built-in tiers with the score's overrides and additions."""
    return {**DEFAULT_TIERS, **score.routing.tiers}


def routing_table(score: Score) -> dict[tuple[str, str], str]:
    """The default table with the score's ``routing.table`` cells laid over it."""
    return {**DEFAULT_TABLE, **score.routing.table}


def resolve_route(score: Score, agent: Agent) -> Route:
    """The tier and model the router picks for ``agent`` (before the governor steps in)."""
    if agent.model is not None:
        return Route(None, agent.model, "pinned by model:")
    cell = (agent.tempo, agent.dynamics)
    tier = score.routing.table.get(cell)
    reason = f"routing.table {agent.tempo} x {agent.dynamics}"
    if tier is None:
        tier = DEFAULT_TABLE[cell]
        reason = f"default table {agent.tempo} x {agent.dynamics}"
    spec = tiers_of(score).get(tier)
    model = spec.model if spec is not None else DEFAULT_TIERS["mid"].model
    return Route(tier, model, reason)


def fallbacks_of(tiers: Mapping[str, TierSpec], tier: str) -> tuple[Route, ...]:
    """Where a call of ``tier`` goes when that tier keeps failing: the next tiers up, in order."""
    if tier not in TIER_ORDER:
        return ()
    own = tiers[tier].model if tier in tiers else None
    return tuple(
        Route(higher, tiers[higher].model, f"fallback from {tier}")
        for higher in TIER_ORDER[TIER_ORDER.index(tier) + 1 :]
        if higher in tiers and tiers[higher].model != own
    )
