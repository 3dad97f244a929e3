"""The plain view of a run: the log lines off a terminal and the summary tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.cli.plain import PlainLog
from hct_cli.engine.events import Event

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def _lines(*events: Event) -> list[str]:
    stream = io.StringIO()
    log = PlainLog(3, stream, live=False)
    for event in events:
        log(event)
    return stream.getvalue().splitlines()


def test_a_replay_is_logged_with_its_reason() -> None:
    [line] = _lines(Event("replay", 1.5, "editor", 2, {"keys": ["draft", "outline"], "replay": 1, "hold": False}))
    assert "replay" in line and "editor@2" in line
    assert "draft, outline" in line and "changed while it ran" in line and "fresh values" in line
    [escalated] = _lines(Event("replay", 2.0, "editor", 3, {"keys": ["draft"], "replay": 4, "hold": True}))
    assert "replay 4" in escalated and "takes turns" in escalated


def test_a_stale_read_let_through_is_logged() -> None:
    [line] = _lines(Event("stale_read", 1.0, "writer", 1, {"keys": ["outline"]}))
    assert "stale_read" in line and "writer@1" in line and "outline" in line


def test_a_performance_logs_every_replay(repo: Path) -> None:
    score = str(repo / "scores" / "collab-writing.yaml")
    result = runner.invoke(app, ["perform", score, "--simulate", "--time-scale", "0.02", "--no-tui"])
    assert result.exit_code == 0, result.output
    logged = [line for line in result.stderr.splitlines() if line.split()[1:2] == ["replay"]]
    run_id = result.stderr.split()[1].rstrip(":")
    shown = json.loads(runner.invoke(app, ["show", run_id, "--json"]).stdout)
    assert shown["replays"] > 0 and len(logged) == shown["replays"]
    assert all("changed while it ran" in line for line in logged)
