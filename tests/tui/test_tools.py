"""Tool calls in the conductor: rows under their agent, a lane on the timeline, held and refused
calls, fed to the real Textual app (``App.run_test``) as the engine emits them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hct_cli.events import Event
from hct_cli.tui.app import Conductor
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import Question
from hct_cli.tui.views import TOOL_ROWS, AgentsView, TimelineView
from tests.engine.fakes import score
from tests.tui.conftest import SIZE, signal_lines, states, wait_for

pytestmark = [pytest.mark.timeout(60), pytest.mark.anyio]


class Fed:
    """A stage the test feeds: each batch of events reaches the ensemble when the test puts it."""

    live = False

    def __init__(self, ensemble: Ensemble) -> None:
        self.ensemble = ensemble
        self.batches: asyncio.Queue[list[Event]] = asyncio.Queue()
        self.taken = 0

    @property
    def paused(self) -> bool:
        return False

    async def play(self) -> None:
        while True:
            for event in await self.batches.get():
                self.ensemble(event)
            self.taken += 1

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def waiting(self) -> list[Question]:
        return []

    def decide(self, agent: str, version: int, verdict: str) -> str | None:
        return "nothing to decide"

    def caesura(self) -> str | None:
        return "nothing to stop"


def conductor() -> tuple[Conductor, Fed]:
    program = score(
        {"reviewer": {"prompt": "review"}, "fixer": {"prompt": "fix {{ cues.reviewer }}", "cues": ["reviewer"]}}
    )
    ensemble = Ensemble(program, run_id="tools-run")
    ensemble.clock = lambda: ensemble.last_time  # the run's time is the events' own
    stage = Fed(ensemble)
    return Conductor(ensemble, stage), stage


def call(at: float, station: str, step: int, index: int, tool: str, effects: str = "read", **more: Any) -> Event:
    data = {"step": step, "index": index, "id": f"c{step}{index}", "tool": tool, "effects": effects}
    data |= {"arguments": {}, "digest": f"d{step}{index}", "speculative": False, **more}
    return Event("tool_call", at, station, 1, data)


def answer(at: float, station: str, step: int, index: int, tool: str, ok: bool = True, **more: Any) -> Event:
    data = {"step": step, "index": index, "tool": tool, "digest": f"d{step}{index}", "effects": "read", "ok": ok}
    data |= {"duration_s": 0.25, "size": 2048, "error": None if ok else "exit 128", "text": "secret-looking text"}
    data |= {"cached": False, "restored": False, **more}
    return Event("tool_result", at, station, 1, data)


def start() -> list[Event]:
    return [
        Event("run_start", 0.0, None, 0, {"run_id": "tools-run"}),
        Event("issue", 0.1, "reviewer", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        Event(  # a model round that asked for tools: a result of its own, purpose round
            "result",
            0.5,
            "reviewer",
            1,
            {
                "purpose": "round",
                "step": 1,
                "model": "gpt-4o-mini",
                "tier": "mid",
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "cost_usd": 0.001,
                "latency_s": 0.4,
                "tool_calls": [{"id": "c10", "name": "git__git_diff", "arguments": {}}],
            },
        ),
    ]


async def feed(pilot: Any, stage: Fed, *events: Event) -> None:
    wanted = stage.taken + 1
    await stage.batches.put(list(events))
    await wait_for(pilot, lambda: stage.taken >= wanted, "the events are taken")
    await pilot.pause(0.2)  # a frame or two


def agent_lines(app: Conductor) -> list[str]:
    view = app.query_one(AgentsView)
    return ["".join(segment.text for segment in view.line(i)).rstrip() for i in range(view.count())]


def timeline_lines(app: Conductor) -> list[str]:
    view = app.query_one(TimelineView)
    return ["".join(segment.text for segment in view.line(i)).rstrip() for i in range(view.count())]


async def test_tool_rows_follow_their_calls_under_the_agent() -> None:
    app, stage = conductor()
    async with app.run_test(size=SIZE) as pilot:
        await feed(
            pilot,
            stage,
            *start(),
            call(0.5, "reviewer", 1, 0, "git.git_diff"),
            call(0.5, "reviewer", 1, 1, "git.git_show"),
        )
        lines = agent_lines(app)
        assert lines[0].startswith("reviewer") and states(app)["reviewer"] == "running"
        assert lines[1].split()[1:4] == ["git.git_diff", "running", "read"]
        assert lines[2].split()[1:4] == ["git.git_show", "running", "read"]
        assert lines[3].startswith("fixer"), "the tool rows sit under their own agent"
        assert "120" in lines[0], "a round's tokens count while the agent works"
        await feed(
            pilot,
            stage,
            answer(0.75, "reviewer", 1, 0, "git.git_diff"),
            answer(0.8, "reviewer", 1, 1, "git.git_show", ok=False),
        )
        lines = agent_lines(app)
        done, failed = lines[1], lines[2]
        assert done.split()[1:3] == ["git.git_diff", "done"] and "0.25s" in done and "2.0 kB" in done
        assert failed.split()[1:3] == ["git.git_show", "error"] and "exit 128" in failed
        assert "secret-looking" not in "\n".join(lines), "a tool's answer is never shown"
        assert any("tool_error" in line and "exit 128" in line for line in signal_lines(app))
        # A new step replaces the rows: only the latest step's calls are shown.
        await feed(pilot, stage, call(1.0, "reviewer", 2, 0, "git.git_log"))
        lines = agent_lines(app)
        assert [line.split()[1] for line in lines[1:2]] == ["git.git_log"] and lines[2].startswith("fixer")
        # The timeline has a lane of the agent's calls under its bar.
        lanes = timeline_lines(app)
        assert lanes[0].startswith("reviewer") and lanes[1].startswith("└ tools") and lanes[2].startswith("fixer")
        assert "▪" in lanes[1]
        # Its result commits: the rows go, its tokens are every round's and the answer's (each counted once).
        result = {"purpose": "call", "ok": True, "prompt_tokens": 200, "completion_tokens": 30, "cost_usd": 0.003}
        await feed(
            pilot,
            stage,
            answer(1.2, "reviewer", 2, 0, "git.git_log"),
            Event("result", 1.5, "reviewer", 1, result),
            Event("cue", 1.5, "reviewer", 1, {"cost_usd": 0.004, "keys": {}}),
        )
        lines = agent_lines(app)
        assert lines[1].startswith("fixer") and states(app)["reviewer"] == "done"
        assert " 350 " in lines[0] and "$0.0040" in lines[0]
        assert app.ensemble.spend_usd == pytest.approx(0.004)
        assert timeline_lines(app)[1].startswith("└ tools"), "the timeline keeps the calls"


async def test_only_the_latest_calls_of_a_step_are_shown() -> None:
    app, stage = conductor()
    async with app.run_test(size=SIZE) as pilot:
        calls = [call(0.5, "reviewer", 1, i, f"git.tool_{i}") for i in range(TOOL_ROWS + 2)]
        await feed(pilot, stage, *start(), *calls)
        lines = agent_lines(app)
        assert "2 earlier call(s) of this step" in lines[1]
        shown = [line.split()[1] for line in lines[2 : 2 + TOOL_ROWS]]
        assert shown == [f"git.tool_{i}" for i in range(2, TOOL_ROWS + 2)]
        assert lines[2 + TOOL_ROWS].startswith("fixer")


async def test_a_held_write_and_a_refused_call_are_visible() -> None:
    app, stage = conductor()
    async with app.run_test(size=SIZE) as pilot:
        hold = Event("tool_hold", 0.6, "reviewer", 1, {"step": 1, "index": 0, "tool": "fs.write_file", "digest": "d10"})
        refused = Event(
            "refused",
            0.6,
            "reviewer",
            1,
            {"reason": "shell.exec is not in its tools list", "tool": "shell.exec", "step": 1, "index": 1},
        )
        await feed(
            pilot,
            stage,
            *start(),
            call(0.5, "reviewer", 1, 0, "fs.write_file", "write", speculative=True),
            hold,
            refused,
        )
        lines = agent_lines(app)
        assert lines[1].split()[1:4] == ["fs.write_file", "held", "write"]
        assert lines[2].split()[1:3] == ["shell.exec", "refused"] and "not in its tools list" in lines[2]
        logged = signal_lines(app)
        assert any("tool_hold" in line and "fs.write_file" in line and "held until" in line for line in logged)
        assert any("refused" in line and "shell.exec" in line for line in logged)
        lane = timeline_lines(app)[1]
        assert "✕" in lane and "░" in lane
        # The older refusal without a tool is still a plain signal, and no tool row.
        await feed(pilot, stage, Event("refused", 0.7, "fixer", 1, {"reason": "needs --allow-exec"}))
        assert any("needs --allow-exec" in line for line in signal_lines(app))
        assert not any(line.startswith("  └") for line in agent_lines(app)[4:])


async def test_a_caesura_lists_the_writes_it_cannot_undo() -> None:
    app, stage = conductor()
    async with app.run_test(size=SIZE) as pilot:
        writes = [
            {"agent": "reviewer", "version": 1, "tool": "fs.write_file", "digest": "d10", "arguments": {"path": "a"}}
        ]
        caesura = Event(
            "caesura", 1.0, None, 0, {"reason": "called", "checkpoint": 0, "squashed": {}, "writes": writes}
        )
        await feed(pilot, stage, *start(), caesura)
        [line] = [line for line in signal_lines(app) if "caesura" in line]
        assert "1 write call(s) after the checkpoint are not undone: reviewer@1 fs.write_file" in line
