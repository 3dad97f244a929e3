"""The budget governor: step down near the cap, stop when nothing fits, boost on request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.governor import HEADROOM, Governor, worst_case_usd
from hct_cli.engine.perform import Performer
from hct_cli.events import Event
from hct_cli.models import model_info
from hct_cli.program.compile import Program
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

PROMPT, OUT, MAX = 2000, 1100, 1200


def task(tempo: str, dynamics: str, **extra: Any) -> dict[str, Any]:
    return {
        "prompt": "p",
        "tempo": tempo,
        "dynamics": dynamics,
        "max_tokens": MAX,
        "simulate": {"latency_ms": 0, "prompt_tokens": PROMPT, "output_tokens": OUT},
        **extra,
    }


def three_complex() -> Program:
    return program_of({f"c{i}": task("presto", "ff") for i in range(3)})


def frontier_cost() -> float:
    price = model_info("claude-sonnet-4-5")
    assert price is not None
    return price.cost(PROMPT, OUT)


def governor(program: Program, budget: float | None) -> Governor:
    return Governor(program, budget, lambda spec: spec.agent.simulate.prompt_tokens or 1)


def test_without_a_budget_routes_stay_and_worst_cases_are_priced() -> None:
    program = three_complex()
    g = governor(program, None)
    decision = g.decide(program.stations["c0"], PROMPT)
    assert decision.route == program.stations["c0"].route
    assert decision.stop is None and not decision.events
    assert decision.worst_case_usd == pytest.approx(worst_case_usd("claude-sonnet-4-5", PROMPT, MAX))


def test_steps_down_one_tier_when_projected_spend_nears_the_cap() -> None:
    program = three_complex()
    projected = 3 * frontier_cost()
    g = governor(program, projected / HEADROOM - 1e-9)  # projected is just over the headroom line
    decision = g.decide(program.stations["c0"], PROMPT)
    assert decision.route.tier == "mid"
    kind, data = decision.events[0]
    assert kind == "step_down" and data["from_tier"] == "frontier" and "projected" in data["reason"]


def test_keeps_the_tier_with_headroom_to_spare() -> None:
    program = three_complex()
    g = governor(program, 10.0)
    assert g.decide(program.stations["c0"], PROMPT).route.tier == "frontier"


def test_stops_when_not_even_the_cheapest_tier_fits() -> None:
    program = program_of({"only": task("presto", "ff", model="claude-sonnet-4-5")})  # pinned: not eligible
    g = governor(program, 0.001)
    decision = g.decide(program.stations["only"], PROMPT)
    assert decision.stop is not None and "does not fit" in decision.stop


def test_reservations_hold_until_settled() -> None:
    program = three_complex()
    g = governor(program, 1.0)
    decision = g.decide(program.stations["c0"], PROMPT)
    g.reserve(decision)
    assert g.reserved == pytest.approx(decision.worst_case_usd)
    g.settle(decision.worst_case_usd, 0.01)
    assert g.reserved == pytest.approx(0.0) and g.spent == pytest.approx(0.01)


def test_boost_moves_one_tier_up_even_without_a_budget() -> None:
    program = program_of({"a": task("allegro", "mf")})
    g = governor(program, None)
    assert not g.steers("a")
    g.boost("a")
    assert g.steers("a")
    decision = g.decide(program.stations["a"], PROMPT)
    assert decision.route.tier == "frontier"
    assert decision.events[0][0] == "boost"


def run(program: Program, budget: float | None) -> tuple[Any, list[Event]]:
    events: list[Event] = []
    performer = Performer(
        program,
        Hands(lambda spec: SimulatedProvider(0)),
        observers=[events.append],
        options=EngineOptions(budget_usd=budget),
    )
    return asyncio.run(performer.run()), events


def test_a_run_under_half_its_cost_stays_within_budget_plus_one_call() -> None:
    program = program_of(
        {
            **{f"s{i}": task("andante", "pp") for i in range(3)},
            **{f"m{i}": task("allegro", "mf") for i in range(4)},
            **{f"c{i}": task("presto", "ff") for i in range(3)},
        }
    )
    free, _ = run(program, None)
    budget = free.cost_usd / 2
    capped, events = run(program, budget)
    worst = max(record.worst_case_usd for record in capped.agents.values())
    assert capped.cost_usd <= budget + worst
    assert capped.status in ("completed", "budget_exhausted")
    assert any(e.kind == "step_down" for e in events), "the governor never stepped down"
    if capped.status == "completed":
        assert capped.cost_usd < free.cost_usd
    # Whatever was done stays done.
    assert all(r.output is not None for r in capped.agents.values() if r.status == "done")


def test_a_budget_too_small_for_anything_ends_budget_exhausted() -> None:
    program = program_of({"a": task("presto", "ff", model="claude-sonnet-4-5"), "b": task("presto", "ff")})
    result, events = run(program, 1e-6)
    assert result.status == "budget_exhausted"
    assert any(e.kind == "budget_stop" for e in events)
    assert result.cost_usd <= 1e-6


def test_under_a_budget_a_call_never_falls_back_to_a_dearer_tier() -> None:
    """A fallback dearer than the call's reserved worst case could overshoot the cap: it is not offered."""
    program = program_of({"a": task("allegro", "mf")})
    seen: list[tuple[str, ...]] = []

    class Recorder(SimulatedProvider):
        async def call(self, request: Any) -> Any:
            seen.append(tuple(f.tier for f in request.fallbacks))
            return await super().call(request)

    asyncio.run(Performer(program, Hands(lambda spec: Recorder(0))).run())
    asyncio.run(Performer(program, Hands(lambda spec: Recorder(0)), options=EngineOptions(budget_usd=1.0)).run())
    assert seen == [("frontier",), ()]


def test_a_failed_gate_that_escalates_sends_the_retry_one_tier_up() -> None:
    program = program_of(
        {
            "a": {
                "prompt": "p",
                "tempo": "allegro",
                "dynamics": "mf",
                "fermata": {"check": {"min_length": 10}, "on_fail": "escalate", "retries": 1},
                "simulate": {"latency_ms": 0},
            }
        }
    )

    class ShortOnMid(SimulatedProvider):
        async def call(self, request: Any) -> Any:
            result = await super().call(request)
            if request.tier == "mid":
                result.output = "short"
            return result

    events: list[Event] = []
    result = asyncio.run(Performer(program, Hands(lambda spec: ShortOnMid(0)), observers=[events.append]).run())
    assert result.status == "completed"
    record = result.agents["a"]
    assert (record.tier, record.model, record.version, record.calls) == ("frontier", "claude-sonnet-4-5", 2, 2)
    kinds = [(e.kind, e.data.get("passed")) for e in events if e.kind in ("gate", "boost")]
    assert kinds == [("gate", False), ("boost", None), ("gate", True)]


def test_a_gate_that_keeps_failing_fails_the_agent_after_its_retries() -> None:
    program = program_of(
        {
            "a": {
                "prompt": "p",
                "fermata": {"check": {"regex": "^NEVER$"}, "retries": 2},
                "simulate": {"latency_ms": 0},
            },
            "b": {"prompt": "p", "cues": ["a"], "simulate": {"latency_ms": 0}},
        }
    )
    result, _ = run(program, None)
    assert result.status == "failed"
    assert result.agents["a"].calls == 3 and "fermata failed 3 times" in (result.agents["a"].error or "")
    assert result.agents["b"].status == "skipped"
