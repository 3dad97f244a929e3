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


# -- tool calls -----------------------------------------------------------------------------------


def _tool(kind: str, **data: object) -> Event:
    return Event(kind, 1.25, "reviewer", 2, {"step": 3, "index": 1, "tool": "git.git_diff", "digest": "abc", **data})


def test_tool_calls_are_logged_one_compact_line_each() -> None:
    sent, held, ok, failed, refused = _lines(
        _tool("tool_call", effects="read", arguments={"target": "HEAD"}, speculative=True, id="c1"),
        _tool("tool_hold", tool="fs.write_file"),
        _tool(
            "tool_result",
            effects="read",
            ok=True,
            duration_s=0.125,
            size=2500,
            error=None,
            text="diff --git a b\n" * 500,
        ),
        _tool(
            "tool_result", effects="read", ok=False, duration_s=0.5, size=0, error="timed out", text="", cached=False
        ),
        Event(
            "refused",
            1.5,
            "reviewer",
            2,
            {"reason": "not in its tools list", "tool": "shell.exec", "step": 3, "index": 2},
        ),
    )
    assert sent.split()[1:3] == ["tool_call", "reviewer@2"]
    assert sent.endswith("step 3 #1 git.git_diff read (speculative)") and "HEAD" not in sent
    assert (
        held.split()[1] == "tool_hold"
        and "step 3 #1 fs.write_file write held until the speculation is confirmed" in held
    )
    assert ok.split()[1] == "tool_result" and ok.endswith("step 3 #1 git.git_diff read 0.125s 2.5 kB ok")
    assert "diff --git" not in ok, "the answer's text is never logged"
    assert failed.endswith("read 0.500s 0 B error: timed out")
    assert refused.split()[1] == "refused" and refused.endswith("step 3 #2 shell.exec refused: not in its tools list")
    [cached] = _lines(_tool("tool_result", effects="read", ok=True, duration_s=0.0, size=12, cached=True))
    assert cached.endswith("0.000s 12 B cached ok")


def test_an_old_style_refusal_keeps_its_reason() -> None:
    [line] = _lines(Event("refused", 0.5, "a", 1, {"reason": "exec is not allowed: pass --allow-exec"}))
    assert line.endswith("exec is not allowed: pass --allow-exec")


def test_a_caesura_names_the_writes_it_could_not_undo() -> None:
    writes = [{"agent": "fixer", "version": 1, "tool": "fs.write_file", "digest": "d", "arguments": {"path": "x"}}]
    [line] = _lines(
        Event("caesura", 2.0, None, 0, {"reason": "called by the conductor", "checkpoint": 1, "writes": writes})
    )
    assert line.endswith("called by the conductor; not undone, written after the checkpoint: fixer@1 fs.write_file")


def test_on_a_terminal_only_tool_news_interrupts_the_status_line() -> None:
    stream = io.StringIO()
    log = PlainLog(3, stream, live=True)
    log(_tool("tool_call", effects="read", speculative=False))
    log(_tool("tool_result", effects="read", ok=True, duration_s=0.1, size=1))
    quiet = stream.getvalue()
    log(_tool("tool_result", effects="read", ok=False, duration_s=0.1, size=0, error="boom"))
    log(_tool("tool_hold", tool="fs.write_file"))
    news = stream.getvalue()[len(quiet) :]
    assert "tool_call" not in quiet and "tool_result" not in quiet
    assert "error: boom" in news and "tool_hold" in news
