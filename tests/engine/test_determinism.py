"""Determinism under the simulated provider: the seed fixes every draw.

Same seed, same outputs, tokens and costs per agent; another seed, other outputs; and nothing
depends on the dispatch policy, the run id or the order in which calls complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from hct_cli.engine import EngineOptions, Hands, RunResult, perform
from hct_cli.program.compile import Program, StationSpec
from hct_cli.providers.base import Provider
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(60)

AGENTS: dict[str, Any] = {
    "parse": {"prompt": "Split: {{ inputs.diff }}", "tempo": "presto", "dynamics": "pp"},
    "security": {"prompt": "Security of {{ cues.parse }}", "cues": ["parse"], "dynamics": "ff"},
    "style": {"prompt": "Style of {{ cues.parse }}", "cues": ["parse"], "dynamics": "p"},
    "perf": {"prompt": "Performance of {{ cues.parse }}", "cues": ["parse"]},
    "aggregate": {
        "prompt": "Merge {{ cues.security }} {{ cues.style }} {{ cues.perf }}",
        "cues": ["security", "style", "perf"],
        "tempo": "largo",
    },
}


def program() -> Program:
    agents = {name: {**spec, "simulate": {"latency_ms": [0, 5]}} for name, spec in AGENTS.items()}
    return program_of(agents, inputs={"diff": {"default": "x"}})


Figures = dict[str, tuple[Any, str | None, int, int, float, float]]


def _simulated(seed: int) -> Callable[[StationSpec], Provider]:
    """Every station's provider: a simulated one seeded with SEED (bound now, so a loop can vary it)."""
    return lambda spec: SimulatedProvider(seed)


def run(seed: int, dispatch: str = "reactive", prog: Program | None = None) -> tuple[RunResult, Figures]:
    result = asyncio.run(
        perform(
            prog or program(),
            Hands(lambda spec: SimulatedProvider(seed)),
            inputs={"diff": "--- a/x.py\n+++ b/x.py\n"},
            options=EngineOptions(dispatch=dispatch),
        )
    )
    assert result.status == "completed"
    figures = {
        name: (r.output, r.model, r.prompt_tokens, r.completion_tokens, r.cost_usd, r.latency_s)
        for name, r in result.agents.items()
    }
    return result, figures


def test_same_seed_same_outputs_tokens_and_costs() -> None:
    first, a = run(7)
    second, b = run(7)
    assert first.run_id != second.run_id  # the run id is not an input of any draw
    assert a == b
    assert first.cost_usd == second.cost_usd
    assert first.frontier_cost_usd == second.frontier_cost_usd
    assert first.critical_path_s == second.critical_path_s
    # The models are priced: the comparison is not of zeros.
    assert a["security"][4] > 0 and a["perf"][4] > 0


def test_a_fresh_program_gives_the_same_figures() -> None:
    _, a = run(11, prog=program())
    _, b = run(11, prog=program())
    assert a == b


def test_different_seeds_give_different_outputs() -> None:
    _, a = run(1)
    _, b = run(2)
    assert any(a[name][0] != b[name][0] for name in a)
    assert any(a[name][5] != b[name][5] for name in a)  # drawn latencies differ too


@pytest.mark.parametrize("dispatch", ["batch", "sequential"])
def test_figures_do_not_depend_on_the_dispatch_policy(dispatch: str) -> None:
    reactive_result, reactive = run(5, "reactive")
    other_result, other = run(5, dispatch)
    assert other == reactive
    assert other_result.cost_usd == reactive_result.cost_usd
    assert other_result.dispatch == dispatch


def test_outputs_do_not_depend_on_completion_order() -> None:
    """Shuffle latencies (a different time scale per run): outputs stay the same."""

    def figures(scale: float) -> dict[str, Any]:
        result = asyncio.run(
            perform(program(), Hands(lambda spec: SimulatedProvider(9, time_scale=scale)), inputs={"diff": "d"})
        )
        return {name: (r.output, r.cost_usd) for name, r in result.agents.items()}

    assert figures(0.0) == figures(1.0) == figures(2.0)


def test_appended_items_follow_declaration_order() -> None:
    """Three appenders finishing in any order leave the list in declaration order."""
    agents = {
        f"w{i}": {"prompt": f"w{i}", "appends": ["notes"], "simulate": {"latency_ms": [0, 6], "output": f"item {i}"}}
        for i in range(3)
    }
    prog = program_of(agents, state={"notes": {"initial": ["seed"]}})
    for seed in range(4):
        result = asyncio.run(perform(prog, Hands(_simulated(seed))))
        assert result.state["notes"] == ["seed", "item 0", "item 1", "item 2"]
