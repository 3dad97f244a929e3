"""Snapshots of the conductor's main screen at 120x40, as characters, from a journaled run.

The run is a test resource (tests/resources/events/code-review.json), so every time and figure
on screen is fixed. After an intended change of the screen, rewrite the snapshots with
``HCT_UPDATE_SNAPSHOTS=1 python -m pytest tests/tui/test_snapshots.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from textual.pilot import Pilot

from hct_cli.events import Event
from hct_cli.tui.app import Conductor
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import Question, ReplayStage
from tests.tui.conftest import SIZE, journaled_events, program_of, screen_text, wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]

SNAPSHOTS = Path(__file__).parent / "snapshots"


class Still:
    """A stage that plays the events up to a moment at once and stays there."""

    live = True
    paused = False

    def __init__(self, events: list[Event], ensemble: Ensemble, moment: float) -> None:
        self.events = [event for event in events if event.time_s <= moment]
        self.ensemble = ensemble
        ensemble.clock = lambda: moment

    async def play(self) -> None:
        for event in self.events:
            self.ensemble(event)

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def waiting(self) -> list[Question]:
        return []

    def decide(self, agent: str, version: int, verdict: str) -> str | None:
        return None

    def caesura(self) -> str | None:
        return None


async def settled(pilot: Pilot[None], app: Conductor) -> str:
    """The screen once two captures a few frames apart agree (a busy machine draws late)."""
    before = screen_text(app)
    for _ in range(100):
        await pilot.pause(0.1)
        now = screen_text(app)
        if now == before:
            return now
        before = now
    raise AssertionError("the screen never settled")


def _matches(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("HCT_UPDATE_SNAPSHOTS"):
        path.write_text(text + "\n")
    assert path.exists(), f"no snapshot {path.name}: run with HCT_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_text().rstrip("\n")
    assert text == expected, f"the screen differs from {path.name} (HCT_UPDATE_SNAPSHOTS=1 rewrites it)"


@pytest.fixture
def journaled(repo: Path, resources: Path) -> tuple[Ensemble, list[Event]]:
    program, _ = program_of(repo / "scores" / "code-review.yaml")
    run_id, events = journaled_events(resources / "events" / "code-review.json")
    return Ensemble(program, run_id=run_id), events


async def test_main_screen_mid_run(journaled: tuple[Ensemble, list[Event]]) -> None:
    ensemble, events = journaled
    app = Conductor(ensemble, Still(events, ensemble, 1.5))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: ensemble.revision >= 20, "the events are played")
        text = await settled(pilot, app)
    assert "running" in text and "waiting" in text and "done" in text
    _matches("main_mid_run", text)


async def test_main_screen_when_the_replay_ends(journaled: tuple[Ensemble, list[Event]]) -> None:
    ensemble, events = journaled
    app = Conductor(ensemble, ReplayStage(events, ensemble, speed=1000.0))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: ensemble.finished, "the replay ends")
        text = await settled(pilot, app)
    assert "finished — q to quit" in text and "replay" in text
    _matches("main_finished", text)
