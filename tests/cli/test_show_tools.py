"""``hct show RUN`` lists the journaled tool calls: answered, in doubt, held, refused, and the
writes a caesura could not undo; as a table and as ``--json``. The runs are real journals."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.events import Event
from hct_cli.store.home import connect
from hct_cli.store.journal import Journal, RunConfig

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()
TINY = "hct: 1\nname: tiny\nagents:\n  a: {prompt: hi}\n  b: {prompt: there, cues: [a]}\n"


def call(at: float, station: str, step: int, index: int, tool: str, effects: str = "read", **more: Any) -> Event:
    data = {"step": step, "index": index, "id": f"c{index}", "tool": tool, "effects": effects}
    data |= {"arguments": {"path": f"f{index}.txt"}, "digest": f"{station}-{step}-{index}", "speculative": False}
    return Event("tool_call", at, station, 1, data | more)


def answer(at: float, station: str, step: int, index: int, tool: str, ok: bool = True, **more: Any) -> Event:
    data = {"step": step, "index": index, "tool": tool, "digest": f"{station}-{step}-{index}", "effects": "read"}
    data |= {"ok": ok, "duration_s": 0.125, "size": 1500, "error": None if ok else "no such file", "text": "ANSWER"}
    return Event("tool_result", at, station, 1, data | {"cached": False, "restored": False} | more)


def crashed_run() -> str:
    """A run whose process died with a write call sent and its result not journaled."""
    db = connect()
    journal = Journal.start(db, "tools00000001", "tiny", None, TINY, RunConfig())
    for event in (
        Event("run_start", 0.0, None, 0, {"run_id": "tools00000001"}),
        Event("issue", 0.1, "a", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        call(0.2, "a", 1, 0, "git.git_diff"),
        call(0.2, "a", 1, 1, "fs.read_text_file"),
        answer(0.3, "a", 1, 0, "git.git_diff"),
        answer(0.35, "a", 1, 1, "fs.read_text_file", ok=False),
        Event(
            "refused",
            0.4,
            "a",
            1,
            {"reason": "shell.exec is not in its tools list", "tool": "shell.exec", "step": 2, "index": 0},
        ),
        Event("refused", 0.4, "a", 1, {"reason": "a provider's own refusal"}),
        call(0.45, "a", 2, 1, "git.git_log", cached=True),
        answer(0.45, "a", 2, 1, "git.git_log", duration_s=0.0, cached=True),
        Event(
            "result",
            0.5,
            "a",
            1,
            {"purpose": "call", "ok": True, "output": "A", "model": "gpt-4o-mini", "cost_usd": 0.5},
        ),
        Event("cue", 0.5, "a", 1),
        Event("issue", 0.6, "b", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        call(0.7, "b", 1, 0, "fs.write_file", "write"),  # the process dies here
    ):
        journal(event)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    db.execute("UPDATE runs SET pid = ? WHERE run_id = 'tools00000001'", (child.pid,))
    return "tools00000001"


def show_json(run_id: str) -> dict[str, Any]:
    result = runner.invoke(app, ["show", run_id, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_show_json_pairs_each_tool_call_with_its_result() -> None:
    shown = show_json(crashed_run())
    calls = shown["tool_calls"]
    assert [(c["agent"], c["step"], c["index"], c["tool"], c["state"]) for c in calls] == [
        ("a", 1, 0, "git.git_diff", "ok"),
        ("a", 1, 1, "fs.read_text_file", "error"),
        ("a", 2, 0, "shell.exec", "refused"),
        ("a", 2, 1, "git.git_log", "ok"),
        ("b", 1, 0, "fs.write_file", "sent"),
    ]
    diff, missing, refused, cached, write = calls
    assert (diff["ok"], diff["duration_s"], diff["size"], diff["effects"], diff["digest"]) == (
        True,
        0.125,
        1500,
        "read",
        "a-1-0",
    )
    assert diff["arguments"] == {"path": "f0.txt"} and diff["segment"] == 1 and diff["version"] == 1
    assert (missing["ok"], missing["error"]) == (False, "no such file")
    assert refused["refused"] is True and refused["error"] == "shell.exec is not in its tools list"
    assert cached["cached"] is True and cached["restored"] is False
    assert (write["effects"], write["ok"], write["duration_s"]) == ("write", None, None), "in doubt: no result"
    assert "ANSWER" not in json.dumps(shown), "a tool's answer is not shown"
    # An unfinished run's agents carry their calls in the shape perform --json gives them.
    [first, *_] = shown["agents"]["a"]["tool_calls"]
    assert set(first) == {
        "step",
        "index",
        "tool",
        "effects",
        "ok",
        "duration_s",
        "size",
        "error",
        "cached",
        "restored",
        "refused",
        "worker",  # None: these ran at the conductor
    }
    assert first["worker"] is None
    assert [c["tool"] for c in shown["agents"]["b"]["tool_calls"]] == ["fs.write_file"]


def test_show_prints_the_tool_calls_and_the_call_in_doubt() -> None:
    result = runner.invoke(app, ["show", crashed_run()], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "tool calls" in text
    rows = {line.split("│")[5].strip(): line for line in text.splitlines() if line.count("│") > 8}
    assert "sent, no result journaled" in rows["fs.write_file"] and "write" in rows["fs.write_file"]
    assert "in doubt" in rows["fs.write_file"]
    assert "0.125s" in rows["git.git_diff"] and "1.5 kB" in rows["git.git_diff"] and " ok " in rows["git.git_diff"]
    assert "no such file" in rows["fs.read_text_file"] and "error" in rows["fs.read_text_file"]
    assert "refused" in rows["shell.exec"] and "not in its tools list" in rows["shell.exec"]
    assert "cached" in rows["git.git_log"]


def test_a_held_write_of_a_squashed_speculation_is_shown_held() -> None:
    db = connect()
    journal = Journal.start(db, "held00000001", "tiny", None, TINY, RunConfig())
    journal(Event("run_start", 0.0, None, 0, {"run_id": "held00000001"}))
    journal(call(0.1, "b", 1, 0, "fs.write_file", "write", speculative=True))
    journal(Event("tool_hold", 0.1, "b", 1, {"step": 1, "index": 0, "tool": "fs.write_file", "digest": "b-1-0"}))
    journal(Event("squash", 0.2, "b", 1, {"on": "a"}))
    journal(Event("run_end", 0.3, None, 0, {"status": "completed"}))
    journal.finish("completed", 0.0, {"run_id": "held00000001", "status": "completed", "agents": {}})
    [write] = show_json("held00000001")["tool_calls"]
    assert (write["state"], write["held"], write["speculative"]) == ("held", True, True)
    text = runner.invoke(app, ["show", "held00000001"], env={"COLUMNS": "200"}).stdout
    assert "held, no result journaled" in text


def test_a_caesura_lists_the_writes_after_its_checkpoint() -> None:
    db = connect()
    journal = Journal.start(db, "caesura000001", "tiny", None, TINY, RunConfig())
    writes = [
        {"agent": "b", "version": 1, "tool": "fs.write_file", "digest": "b-1-0", "arguments": {"path": "out.txt"}}
    ]
    journal(Event("run_start", 0.0, None, 0, {"run_id": "caesura000001"}))
    journal(call(0.1, "b", 1, 0, "fs.write_file", "write"))
    journal(answer(0.2, "b", 1, 0, "fs.write_file", effects="write"))
    caesura = {"reason": "called by the conductor", "checkpoint": 0, "squashed": {"b": 1}, "writes": writes}
    journal(Event("caesura", 0.3, None, 0, caesura))
    journal(Event("run_end", 0.4, None, 0, {"status": "caesura"}))
    result = {"run_id": "caesura000001", "status": "caesura", "agents": {}}
    result["caesura"] = {"agent": None, "reason": "called by the conductor", "checkpoint": 0, "squashed": {"b": 1}}
    journal.finish("caesura", 0.0, result)
    shown = show_json("caesura000001")
    assert shown["caesura"]["writes"] == writes
    text = runner.invoke(app, ["show", "caesura000001"], env={"COLUMNS": "200"}).stdout
    assert "not undone by the rollback" in text and 'b@1 fs.write_file {"path": "out.txt"}' in text


def test_a_run_without_tools_shows_no_tool_table() -> None:
    db = connect()
    journal = Journal.start(db, "plain0000001", "tiny", None, TINY, RunConfig())
    journal(Event("run_start", 0.0, None, 0, {"run_id": "plain0000001"}))
    journal(Event("refused", 0.1, "a", 1, {"reason": "exec is not allowed"}))
    assert "tool_calls" not in show_json("plain0000001")  # left out, as perform --json leaves it out
    assert "tool calls" not in runner.invoke(app, ["show", "plain0000001"]).stdout
