"""The budget governor: spend held under a cap the way a DVFS governor holds a power limit.

Before a call is issued the governor reserves its worst case (prompt tokens plus ``max_tokens``
at the model's prices) and releases the reservation when the actual cost is known, so spend can
exceed the cap by at most one call's worst case misjudged. As projected spend (spent + reserved
+ the expected cost of work not yet issued) nears the cap, it steps eligible work down one tier,
as schedutil lowers the frequency when headroom shrinks; when even the cheapest eligible tier
does not fit, the run stops issuing. ``boost`` moves one agent a tier up (a failed quality gate
with ``on_fail: escalate``). Every decision carries its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hct_cli.models import model_info
from hct_cli.program.compile import Program, StationSpec
from hct_cli.program.routing import TIER_ORDER, Route

__all__ = ["HEADROOM", "Decision", "Governor", "expected_output_tokens", "worst_case_usd"]

#: Step down once projected spend passes this share of the cap.
HEADROOM = 0.8


def expected_output_tokens(spec: StationSpec) -> int:
    figures = spec.agent.simulate
    if figures.output_tokens is not None:
        return min(figures.output_tokens, spec.agent.max_tokens)
    return spec.agent.max_tokens // 2


def worst_case_usd(model: str, prompt_tokens: int, max_tokens: int) -> float:
    """The most one call can cost: its prompt plus ``max_tokens`` of output."""
    price = model_info(model)
    return price.cost(prompt_tokens, max_tokens) if price is not None else 0.0


@dataclass
class Decision:
    """Where one call goes, what it may cost at worst, and why it moved (if it did)."""

    name: str
    route: Route
    worst_case_usd: float
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stop: str | None = None  # why nothing fits: the run must stop issuing


class Governor:
    """Holds spend of one run under ``budget_usd``; with no budget it only prices calls."""

    def __init__(self, program: Program, budget_usd: float | None, prompt_tokens: Callable[[StationSpec], int]) -> None:
        self.budget_usd = budget_usd
        self.spent = 0.0
        self.reserved = 0.0
        # The ladder: the score's tiers known to the router, cheapest first.
        self._ladder = [tier for tier in TIER_ORDER if tier in program.tiers]
        self._tiers = program.tiers
        self._boosts: dict[str, int] = {}
        self._pending: dict[str, float] = {}
        if budget_usd is not None:
            for name, spec in program.stations.items():
                if spec.agent.kind == "llm":
                    price = model_info(spec.route.model)
                    out = expected_output_tokens(spec)
                    self._pending[name] = price.cost(prompt_tokens(spec), out) if price is not None else 0.0
        self._pending_total = sum(self._pending.values())

    @property
    def active(self) -> bool:
        return self.budget_usd is not None

    def steers(self, name: str) -> bool:
        """Whether ``name``'s calls need a decision (a budget is set, or the agent was boosted)."""
        return self.budget_usd is not None or name in self._boosts

    @property
    def projected_usd(self) -> float:
        return self.spent + self.reserved + self._pending_total

    def decide(self, spec: StationSpec, prompt_tokens: int) -> Decision:
        """Where ``spec``'s next call goes within the budget (``stop`` says when nothing fits)."""
        route = spec.route
        decision = Decision(spec.name, route, 0.0)
        eligible = route.tier in self._ladder and spec.agent.model is None
        if eligible and spec.name in self._boosts:
            assert route.tier is not None
            step = min(self._ladder.index(route.tier) + self._boosts[spec.name], len(self._ladder) - 1)
            if self._ladder[step] != route.tier:
                route = self._route_for(self._ladder[step], f"boosted from {route.tier} after a failed gate")
                decision.events.append(("boost", {"tier": route.tier, "model": route.model, "reason": route.reason}))
        if self.budget_usd is None:
            decision.route = route
            decision.worst_case_usd = worst_case_usd(route.model, prompt_tokens, spec.agent.max_tokens)
            return decision
        budget = self.budget_usd
        projected = self.projected_usd
        if eligible and projected > HEADROOM * budget:
            lower = self._lower(route)
            if lower is not None:
                reason = f"projected spend ${projected:.4f} is over {HEADROOM:.0%} of the ${budget:.4f} cap"
                route = self._step(decision, route, lower, reason)
        worst = worst_case_usd(route.model, prompt_tokens, spec.agent.max_tokens)
        while self.spent + self.reserved + worst > budget:
            lower = self._lower(route) if eligible else None
            left = budget - self.spent - self.reserved
            reason = f"worst case ${worst:.4f} on {route.model} does not fit the ${left:.4f} left of ${budget:.4f}"
            if lower is None:
                decision.route = route
                decision.worst_case_usd = worst
                decision.stop = reason
                return decision
            route = self._step(decision, route, lower, reason)
            worst = worst_case_usd(route.model, prompt_tokens, spec.agent.max_tokens)
        decision.route = route
        decision.worst_case_usd = worst
        return decision

    def _lower(self, route: Route) -> str | None:
        if route.tier not in self._ladder:
            return None
        index = self._ladder.index(route.tier)
        return self._ladder[index - 1] if index > 0 else None

    def _step(self, decision: Decision, route: Route, lower: str, reason: str) -> Route:
        stepped = self._route_for(lower, f"stepped down from {route.tier}: {reason}")
        decision.events.append(
            ("step_down", {"from_tier": route.tier, "tier": lower, "model": stepped.model, "reason": reason})
        )
        return stepped

    def _route_for(self, tier: str, reason: str) -> Route:
        return Route(tier, self._tiers[tier].model, reason)

    def reserve(self, decision: Decision) -> None:
        """The call of ``decision`` is issued: hold its worst case until it settles."""
        self.reserved += decision.worst_case_usd
        self._pending_total -= self._pending.pop(decision.name, 0.0)

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """A call finished (or failed): swap its reservation for what it really cost."""
        self.reserved -= reserved_usd
        self.spent += actual_usd

    def forget(self, name: str) -> None:
        """``name`` will not be called (skipped): drop its expected cost from the projection."""
        self._pending_total -= self._pending.pop(name, 0.0)

    def boost(self, name: str) -> None:
        """Send ``name``'s next call one tier up (a failed gate asked to escalate)."""
        self._boosts[name] = self._boosts.get(name, 0) + 1
