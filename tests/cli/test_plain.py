"""The plain view of a run: the log lines off a terminal and the summary tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.cli.plain import PlainLog
from hct_cli.events import Event

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


FIRST = "security_review_of_the_authentication_layer_first_pass"
SECOND = "security_review_of_the_authentication_layer_second_pass"


def _performed(resources: Path) -> tuple[str, str]:
    """The summary a piped ``hct perform`` prints, and the run's id."""
    score = resources / "scores" / "long-names.yaml"
    result = runner.invoke(app, ["perform", str(score), "--simulate", "--no-tui"])
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr.split()[1].rstrip(":")


def test_piped_tables_keep_their_natural_width(resources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    summary, run_id = _performed(resources)
    shown = runner.invoke(app, ["show", run_id]).stdout
    runs = runner.invoke(app, ["runs"]).stdout
    routed = runner.invoke(app, ["route", str(resources / "scores" / "long-names.yaml")]).stdout
    for table in (summary, shown, routed):
        assert "…" not in table
        first = [line for line in table.splitlines() if FIRST in line]
        second = [line for line in table.splitlines() if SECOND in line]
        assert len(first) == 1 and len(second) == 1, table
        assert "claude-sonnet-4-5" in first[0]
    assert "a-score-with-agent-names-long-enough-to-overflow-eighty-columns" in runs


def test_a_narrow_columns_folds_names_and_never_cuts_them(resources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    summary, run_id = _performed(resources)
    for table in (summary, runner.invoke(app, ["show", run_id]).stdout):
        assert max(len(line) for line in table.splitlines()) <= 70
        assert "…" not in table and "pass" in table


def test_show_outputs_prints_every_output_and_the_final_state(resources: Path) -> None:
    _, run_id = _performed(resources)
    data = json.loads(runner.invoke(app, ["show", run_id, "--json"]).stdout)
    result = runner.invoke(app, ["show", run_id, "--outputs"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for name in (FIRST, SECOND):
        output = data["agents"][name]["output"]
        assert isinstance(output, str) and output
        assert f"== {name} (done" in text and output in text
    assert "== state" in text and "findings:" in text
    for item in data["state"]["findings"]:
        assert str(item) in text
    assert text.index(FIRST) < text.index(SECOND) < text.index("== state")
