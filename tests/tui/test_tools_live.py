"""The conductor on a real run that calls tools: a simulated model scripted to call the in-tree
counter server (over HTTP, a real MCP server), the rows of its calls shown under its agent while
they run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hct_cli.engine import Hands
from hct_cli.engine.perform import Performer
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.tools.toolbox import McpToolBox
from hct_cli.tui.app import Conductor
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import LiveStage
from hct_cli.tui.views import AgentsView
from tests.engine.fakes import program_of
from tests.tools.servers import counter_http_server, counter_state
from tests.tui.conftest import SIZE, states, wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.anyio]


def agent_lines(app: Conductor) -> list[str]:
    view = app.query_one(AgentsView)
    return ["".join(segment.text for segment in view.line(i)).rstrip() for i in range(view.count())]


async def test_a_running_agents_tool_calls_are_rows_under_it(tmp_path: Path) -> None:
    with counter_http_server(tmp_path) as (url, state):
        slow = [{"tool": "counter.slow", "args": {"ms": 1500, "text": str(i)}} for i in range(2)]
        program = program_of(
            {
                "reviewer": {
                    "prompt": "Look.",
                    "tools": ["counter.slow"],
                    "simulate": {"latency_ms": 10, "tool_calls": [slow]},
                }
            },
            tools={"counter": {"url": url, "effects": "read"}},
        )
        box = McpToolBox(program.score.tools, inputs={}, allow_exec=False)
        ensemble = Ensemble(program, run_id="live-tools")
        performer = Performer(
            program, Hands(lambda spec: SimulatedProvider(0, time_scale=1.0), tools=box), observers=[ensemble]
        )
        stage = LiveStage(performer)
        app = Conductor(ensemble, stage)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await wait_for(
                    pilot,
                    lambda: sum("counter.slow" in line for line in agent_lines(app)) == 2,
                    "both calls are rows under the agent",
                )
                assert states(app)["reviewer"] == "running"
                await wait_for(pilot, lambda: stage.result is not None, "the run ends")
            assert stage.result is not None and stage.result.status == "completed"
            assert counter_state(state)["max_in_flight"] == 2  # the rows were the calls in flight, both at once
        finally:
            await box.aclose()
