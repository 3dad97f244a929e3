"""The governor and the tool loop: every model round is a priced call, and a budget holds each
round's worst case before the round is made.

The agent is routed to a model with a price in the bundled map (``gpt-4o-mini``), so its rounds
cost something under the simulated provider; its tools are the in-tree counter server over
streamable HTTP (a real MCP server). The governor is watched at every event of the run: what it
has spent plus what it holds reserved must never pass the cap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import hct_cli
from hct_cli.engine import Hands, Performer, RunResult
from hct_cli.engine.accounting import frontier_price
from hct_cli.engine.options import EngineOptions
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.tools.toolbox import McpToolBox
from tests.engine.fakes import kinds, program_of
from tests.tools.servers import counter_http_server

pytestmark = pytest.mark.timeout(120)

MODEL = "gpt-4o-mini"
ROUNDS = 3  # rounds that ask for tools, then the answer


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with counter_http_server(tmp_path) as (address, _state):
        yield address


def agents(model: str = MODEL) -> dict[str, Any]:
    """One tool-using agent (three rounds of reads, its prompt growing by each answer) and a
    plain one after it."""
    script = [[{"tool": "counter.echo", "args": {"text": f"answer {step} " + "x" * 200}}] for step in range(ROUNDS)]
    return {
        "looker": {
            "prompt": "Look three times, then answer.",
            "model": model,
            "max_tokens": 2000,
            "tools": ["counter.echo"],
            "max_steps": ROUNDS + 1,
            "simulate": {"tool_calls": script},
        },
        "after": {"prompt": "Sum up {{ cues.looker }}", "cues": ["looker"], "model": model, "max_tokens": 200},
    }


def tools(url: str) -> dict[str, Any]:
    return {"counter": {"url": url, "effects": "read"}}


class Watched:
    """A run whose governor is checked at every event: spent + reserved never over the cap."""

    def __init__(self, program: Program, budget_usd: float | None) -> None:
        self.program = program
        self.budget_usd = budget_usd
        self.events: list[Event] = []
        self.highest = 0.0  # the most spent + reserved the governor ever held
        self.performer: Performer | None = None

    def _seen(self, event: Event) -> None:
        self.events.append(event)
        assert self.performer is not None
        governor = self.performer.state.governor
        self.highest = max(self.highest, governor.spent + governor.reserved)

    def run(self) -> RunResult:
        box = McpToolBox(self.program.score.tools, inputs={}, allow_exec=False)
        hands = Hands(lambda spec: SimulatedProvider(4, time_scale=0.01), tools=box)
        options = EngineOptions(budget_usd=self.budget_usd)
        self.performer = Performer(self.program, hands, observers=[self._seen], options=options)

        async def scenario() -> RunResult:
            assert self.performer is not None
            try:
                return await self.performer.run()
            finally:
                await box.aclose()

        return asyncio.run(scenario())


def paid(events: list[Event], agent: str) -> list[Event]:
    """The agent's paid calls (a failed call's result, ``ok: false``, paid nothing)."""
    return [e for e in kinds(events, "result", agent) if e.data.get("ok", True)]


# -- (a) every round counted --------------------------------------------------------------------


def test_every_round_is_counted_in_the_cost_and_the_frontier_counterfactual(url: str) -> None:
    program = program_of(agents(), tools=tools(url))
    watched = Watched(program, None)
    result = watched.run()
    doc = result.to_json()
    assert doc["status"] == "completed", doc["agents"]["looker"]["error"]
    looker = doc["agents"]["looker"]
    results = paid(watched.events, "looker")
    assert [e.data.get("purpose", "call") for e in results] == ["round"] * ROUNDS + ["call"]
    assert all(e.data["cost_usd"] > 0 for e in results)  # a priced model: every round costs
    assert looker["calls"] == ROUNDS + 1
    assert looker["cost_usd"] == pytest.approx(sum(e.data["cost_usd"] for e in results))
    assert looker["prompt_tokens"] == sum(e.data["prompt_tokens"] for e in results)
    assert looker["completion_tokens"] == sum(e.data["completion_tokens"] for e in results)
    # The rounds read the tools' answers again: each prompt is longer than the one before.
    prompts = [e.data["prompt_tokens"] for e in results]
    assert prompts == sorted(prompts) and len(set(prompts)) == len(prompts)
    # The counterfactual prices each round as a call on the frontier tier's model.
    price = frontier_price(program)
    assert price is not None
    frontier = sum(price.cost(e.data["prompt_tokens"], e.data["completion_tokens"]) for e in results)
    assert looker["frontier_cost_usd"] == pytest.approx(frontier)
    assert frontier > looker["cost_usd"]  # the frontier model costs more than gpt-4o-mini
    everything = [e for e in watched.events if e.kind == "result" and e.data.get("ok", True)]
    assert doc["cost_usd"] == pytest.approx(sum(e.data["cost_usd"] for e in everything))
    assert doc["frontier_cost_usd"] == pytest.approx(
        sum(price.cost(e.data["prompt_tokens"], e.data["completion_tokens"]) for e in everything)
    )


# -- (b) a budget reserves each round's worst case ----------------------------------------------------


def first_round(url: str) -> tuple[float, float]:
    """(the worst case the governor holds at the looker's issue, the first round's cost), from a
    run under a budget that covers everything."""
    watched = Watched(program_of(agents(), tools=tools(url)), 1.0)
    result = watched.run()
    assert result.status == "completed"
    return result.agents["looker"].worst_case_usd, paid(watched.events, "looker")[0].data["cost_usd"]


def test_a_budget_that_covers_every_round_lets_the_agent_finish_within_it(url: str) -> None:
    unbudgeted = Watched(program_of(agents(), tools=tools(url)), None).run().to_json()
    worst, _first = first_round(url)
    # Each round's worst case is about max_tokens at the output price; four rounds and the
    # agent after fit in six of them.
    budget = 6 * worst
    watched = Watched(program_of(agents(), tools=tools(url)), budget)
    result = watched.run()
    doc = result.to_json()
    assert doc["status"] == "completed", doc["agents"]["looker"]["error"]
    assert doc["cost_usd"] == pytest.approx(unbudgeted["cost_usd"])  # the same calls, the same prices
    assert doc["cost_usd"] <= budget
    assert watched.highest <= budget + 1e-12
    assert watched.highest >= worst  # the loop held a worst case while it ran
    assert len(paid(watched.events, "looker")) == ROUNDS + 1
    assert watched.performer is not None
    assert watched.performer.state.governor.reserved == pytest.approx(0.0, abs=1e-12)


def test_a_budget_that_covers_the_first_round_but_not_a_second_fails_the_agent_within_the_cap(url: str) -> None:
    worst, first = first_round(url)
    # The first round fits; after it, what it cost plus the second round's worst case (larger:
    # the prompt has grown) does not.
    budget = worst + first / 2
    watched = Watched(program_of(agents(), tools=tools(url)), budget)
    result = watched.run()
    looker = result.agents["looker"]
    assert looker.status == "failed"
    assert looker.error is not None and "cannot afford another model round" in looker.error
    results = paid(watched.events, "looker")
    assert [e.data.get("purpose") for e in results] == ["round"]  # the second round was never made
    assert len(kinds(watched.events, "tool_result", "looker")) == 1  # the first round's tools ran
    assert result.agents["after"].status != "done"
    assert result.cost_usd == pytest.approx(first)
    assert result.cost_usd <= budget
    # Spent plus reserved never passed the cap, not even while the first round's tools ran.
    assert watched.highest <= budget + 1e-12, (watched.highest, budget)
    assert watched.performer is not None
    assert watched.performer.state.governor.reserved == pytest.approx(0.0, abs=1e-12)


def test_the_scores_routing_budget_holds_the_rounds_too(tmp_path: Path, url: str) -> None:
    worst, first = first_round(url)
    score = {
        "hct": 1,
        "name": "tool-budget",
        "routing": {"budget_usd": worst + first / 2},
        "tools": tools(url),
        "agents": agents(),
    }
    path = tmp_path / "score.yaml"
    path.write_text(json.dumps(score))
    events: list[Event] = []
    result = hct_cli.perform(str(path), simulate=True, seed=4, time_scale=0.01, observers=[events.append], cache=False)
    looker = result.agents["looker"]
    assert looker.status == "failed"
    assert "cannot afford another model round" in (looker.error or "")
    assert result.cost_usd <= worst + first / 2
