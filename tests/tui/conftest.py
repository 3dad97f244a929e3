"""The conductor under test: real runs of simulated scores in the real Textual app, headless."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot

from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.perform import Performer
from hct_cli.events import Event
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.providers.human import HumanDesk
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.tui.app import Conductor
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import LiveStage
from hct_cli.tui.views import AgentsView, CostView, SignalsView

SIZE = (120, 40)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, as Textual does."""
    return "asyncio"


def program_of(path: Path) -> tuple[Program, dict[str, Any]]:
    score = load_score(path)
    return compile_score(score), resolve_inputs(score, {}, allow_path=False)


def live(
    path: Path, *, time_scale: float = 1.0, seed: int = 0, paused: bool = False, budget_usd: float | None = None
) -> tuple[Conductor, LiveStage]:
    """The conductor on a simulated run of the score at ``path`` (not started until the app runs)."""
    program, inputs = program_of(path)
    ensemble = Ensemble(program, budget_usd=budget_usd, run_id="test-run")
    provider = SimulatedProvider(seed, time_scale=time_scale)
    desk = HumanDesk("test-run", None, poll_s=0.01)
    from hct_cli.engine.gates import Gatekeeper

    performer = Performer(
        program,
        Hands(
            lambda spec: provider,
            judge_provider=provider,
            gates=Gatekeeper(tiers=program.tiers, simulate_seed=seed, desk=desk),
        ),
        inputs=inputs,
        observers=[ensemble],
        options=EngineOptions(budget_usd=budget_usd, run_id="test-run"),
    )
    if paused:
        performer.pause()
    stage = LiveStage(performer, desk)
    return Conductor(ensemble, stage), stage


def journaled_events(path: Path) -> tuple[str, list[Event]]:
    """A journaled run kept as a test resource: its id and events (times from zero)."""
    data = json.loads(path.read_text())
    return data["run_id"], [Event(e["kind"], e["at"], e["station"], e["version"], e["data"]) for e in data["events"]]


def screen_text(app: Conductor) -> str:
    """The screen as characters, what a person reads (colours left out)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True))  # what App.export_screenshot renders
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def states(app: Conductor) -> dict[str, str]:
    """Each agent's state as the agents panel shows it (read from its rendered lines)."""
    view = app.query_one(AgentsView)
    names = set(app.ensemble.agents)
    found: dict[str, str] = {}
    for line in view.lines()[1:]:
        words = line.split()
        if len(words) >= 2 and words[0] in names:
            found[words[0]] = words[1]
    return found


def cost_lines(app: Conductor) -> dict[str, str]:
    """The cost panel's figures by label."""
    view = app.query_one(CostView)
    return {line.split()[0]: " ".join(line.split()[1:]) for line in view.text().splitlines() if line.strip()}


def signal_lines(app: Conductor) -> list[str]:
    """Every line the signals panel holds (its filter applied), scrolled into view or not."""
    view = app.query_one(SignalsView)
    return ["".join(segment.text for segment in view.line(i)).rstrip() for i in range(view.count())]


async def wait_for(pilot: Pilot[None], condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Let the app run until ``condition`` holds (a bound, never a measured duration)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await pilot.pause(0.01)
