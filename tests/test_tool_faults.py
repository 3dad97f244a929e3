"""Tool calls under faults, end to end: real ``hct perform`` processes, real MCP servers.

* kill -9 of the conductor between a write call's send and its journaled result
  (``HCT_FAULT=tool_mid:1``), and between that result and the agent's commit (``tool_after:1``):
  the resume does what the journal allows, and the counter server (over HTTP, so it outlives the
  conductor and keeps counting) proves how often the write happened;
* a stdio server that crashes mid-call, hangs, garbles its transport or answers 10 MB: a clear
  agent error naming the server and the tool, the rest of the run goes on, no process is left;
* Ctrl-C and kill -9 of ``hct perform`` while a stdio server runs: the server is gone.

Each score is written by the test (the HTTP server's port and the stdio server's state file are
the test's own), as JSON, which is YAML.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.tools.servers import alive, counter_http_server, counter_state, counter_stdio_argv, descendants, wait_gone

pytestmark = pytest.mark.timeout(90)

KILLED = (-9, 137)  # SIGKILL as seen by subprocess, or as a shell reports it
HCT = [sys.executable, "-m", "hct_cli"]


def _env(home: Path, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HCT_FAULT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env.update(HCT_HOME=str(home), NO_COLOR="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    if fault is not None:
        env["HCT_FAULT"] = fault
    return env


def hct(home: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HCT, *args], env=_env(home, fault), cwd=home, capture_output=True, text=True, timeout=60, check=False
    )


PERFORM = ("--simulate", "--seed", "7", "--no-cache", "--json", "--time-scale", "0.01")


def rounds(*calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A ``simulate:`` section whose model makes these calls, one list per round."""
    return {"tool_calls": [[{"tool": tool, "args": args} for tool, args in round_] for round_ in calls]}


def write_score(home: Path, tools: dict[str, Any], agents: dict[str, Any]) -> Path:
    path = home / "tooled.yaml"
    path.write_text(json.dumps({"hct": 1, "name": "tooled", "tools": tools, "agents": agents}), encoding="utf-8")
    return path


def document(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        doc: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"exit {proc.returncode}, no JSON\nstdout: {proc.stdout}\nstderr: {proc.stderr}") from None
    return doc


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    first = proc.stderr.splitlines()[0] if proc.stderr else ""
    assert first.startswith("run "), proc.stderr
    return first.split()[1].rstrip(":")


def journal(home: Path, run_id: str) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    """(segment, kind, station, data) of every journaled event of the run."""
    with closing(sqlite3.connect(home / "hct.db")) as db:
        rows = db.execute(
            "SELECT segment, kind, station, data FROM events WHERE run_id = ? ORDER BY segment, seq", (run_id,)
        ).fetchall()
    return [(segment, kind, station, json.loads(data) if data else {}) for segment, kind, station, data in rows]


def paid_rounds(home: Path, run_id: str, agent: str) -> list[int]:
    """The segments in which a model round of ``agent`` was paid (a ``result`` with purpose ``round``)."""
    return [
        segment
        for segment, kind, station, data in journal(home, run_id)
        if kind == "result" and station == agent and data.get("purpose") == "round"
    ]


@pytest.fixture
def http_counter(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with counter_http_server(tmp_path) as (url, state):
        yield url, state


def writer_score(home: Path, url: str, *, idempotent: bool) -> Path:
    """w's first tool call is the counter's append (a write); ``other`` is independent of it."""
    tools = {
        "counter": {
            "url": url,
            "effects": "read",
            "tools": {"append": {"effects": "write", "idempotent": idempotent}},
        }
    }
    agents = {
        "w": {
            "prompt": "Append once, then answer.",
            "tools": ["counter.append"],
            "max_steps": 2,
            "simulate": rounds([("counter.append", {"text": "once"})]),
        },
        "other": {"prompt": "Say hello."},
    }
    return write_score(home, tools, agents)


# -- kill -9 between a write's send and its journaled result -----------------------------------


@pytest.mark.parametrize("idempotent", [False, True], ids=["write", "idempotent-write"])
def test_a_write_in_doubt_after_kill_9_stops_the_agent_unless_idempotent(
    tmp_path: Path, http_counter: tuple[str, Path], idempotent: bool
) -> None:
    url, state = http_counter
    score = writer_score(tmp_path, url, idempotent=idempotent)
    crashed = hct(tmp_path, "perform", str(score), *PERFORM, fault="tool_mid:1")
    assert crashed.returncode in KILLED, crashed.stderr
    run_id = run_id_of(crashed)
    assert counter_state(state)["appends"] == 1  # the write was sent and made; its result died with the process
    resumed = hct(tmp_path, "perform", "--resume", run_id, "--json")
    doc = document(resumed)
    w = doc["agents"]["w"]
    if not idempotent:
        # A plain write: it may have happened, so it is not sent again; a person must look.
        assert resumed.returncode == 1
        assert doc["status"] != "completed"
        assert w["status"] == "needs_attention"
        assert w["needs_attention"]["tool"] == "counter.append"
        assert w["needs_attention"]["arguments"] == {"text": "once"}
        assert "may have happened" in w["error"] and "idempotent: true" in w["error"]
        assert counter_state(state)["appends"] == 1  # exactly once
        assert counter_state(state)["log"] == ["once"]
        # Resumed again, it stays stopped: nothing is sent until a person says it may be.
        again = hct(tmp_path, "perform", "--resume", run_id, "--json")
        assert again.returncode == 1 and document(again)["agents"]["w"]["status"] == "needs_attention"
        assert counter_state(state)["appends"] == 1
        # A person who checked that resending is safe says so: then it is sent again, once.
        resent = hct(tmp_path, "perform", "--resume", run_id, "--resend-writes", "--json")
        assert resent.returncode == 0, resent.stderr
        assert document(resent)["status"] == "completed"
        assert counter_state(state)["appends"] == 2
    else:
        # Declared idempotent: sending it twice is what the score allows, so the resume re-sends it.
        assert resumed.returncode == 0, resumed.stderr
        assert doc["status"] == "completed"
        assert w["status"] == "done"
        assert counter_state(state)["appends"] == 2
        assert counter_state(state)["log"] == ["once", "once"]
    assert doc["agents"]["other"]["status"] == "done"
    assert paid_rounds(tmp_path, run_id, "w") == [1]  # the round that asked for the write is not paid again


# -- kill -9 between the write's journaled result and the agent's commit ---------------------


def test_a_journaled_write_result_is_answered_from_the_journal_after_kill_9(
    tmp_path: Path, http_counter: tuple[str, Path]
) -> None:
    url, state = http_counter
    score = writer_score(tmp_path, url, idempotent=False)
    crashed = hct(tmp_path, "perform", str(score), *PERFORM, fault="tool_after:1")
    assert crashed.returncode in KILLED, crashed.stderr
    run_id = run_id_of(crashed)
    assert counter_state(state)["appends"] == 1
    events = journal(tmp_path, run_id)
    assert [kind for _, kind, station, _ in events if station == "w" and kind == "tool_result"] == ["tool_result"]
    assert not [e for e in events if e[1] == "cue" and e[2] == "w"]  # killed before w committed

    resumed = hct(tmp_path, "perform", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    doc = document(resumed)
    assert doc["status"] == "completed"
    assert doc["segment"] == 2
    assert counter_state(state)["appends"] == 1  # never sent again
    w = doc["agents"]["w"]
    assert w["status"] == "done"
    assert [(c["tool"], c.get("restored")) for c in w["tool_calls"]] == [("counter.append", True)]
    # Paid once each: w's round (segment 1), w's answer and other's call; the round is not paid again.
    assert paid_rounds(tmp_path, run_id, "w") == [1]
    assert doc["paid_calls"] == 3
    resent = [e for e in journal(tmp_path, run_id) if e[0] == 2 and e[1] == "tool_call"]
    assert resent == []


# -- a stdio server that misbehaves --------------------------------------------------------------


def _server_processes(state: Path) -> set[int]:
    """Live processes whose command line names ``state`` (the server, and the leash around it)."""
    found = set()
    needle = str(state).encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if needle in cmdline.read_bytes():
                found.add(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return {pid for pid in found if alive(pid)}


def stdio_server(state: Path, **extra: Any) -> dict[str, Any]:
    return {"command": counter_stdio_argv(state), "effects": "read", **extra}


MISBEHAVING = [
    pytest.param("crash", {}, {}, {}, ("closed the connection", "crashing on purpose"), id="crash"),
    pytest.param("hang", {}, {"timeout_s": 2}, {}, ("did not answer within 2 s",), id="hang-server-timeout"),
    # No timeout_s of the server's: the agent's own call timeout bounds the call (timeout_for, the
    # same path as the tempo's; presto's 30 s is too long for a test).
    pytest.param("hang", {}, {}, {"timeout_s": 2}, ("did not answer within 2 s",), id="hang-agent-timeout"),
    pytest.param("garble", {}, {"timeout_s": 5}, {}, ("sent malformed JSON-RPC",), id="garble"),
    pytest.param("huge", {"mb": 10}, {}, {}, ("more than the 1048576 a reply may hold",), id="huge"),
]


@pytest.mark.parametrize(("tool", "args", "server", "agent", "says"), MISBEHAVING)
def test_a_misbehaving_server_fails_its_agent_clearly_and_the_run_goes_on(
    tmp_path: Path,
    tool: str,
    args: dict[str, Any],
    server: dict[str, Any],
    agent: dict[str, Any],
    says: tuple[str, ...],
) -> None:
    bad_state, good_state = tmp_path / "bad.json", tmp_path / "good.json"
    tools = {"counter": stdio_server(bad_state, **server), "helper": stdio_server(good_state)}
    agents = {
        "bad": {
            "prompt": "Call it.",
            "tools": [f"counter.{tool}"],
            "max_steps": 2,
            "simulate": rounds([(f"counter.{tool}", args)]),
            **agent,
        },
        "good": {
            "prompt": "Echo, then answer.",
            "tools": ["helper.echo"],
            "max_steps": 2,
            "simulate": rounds([("helper.echo", {"text": "fine"})]),
        },
    }
    score = write_score(tmp_path, tools, agents)
    proc = hct(tmp_path, "perform", str(score), *PERFORM, "--allow-exec")
    assert proc.returncode == 1, proc.stderr
    doc = document(proc)
    assert doc["status"] == "failed"
    bad = doc["agents"]["bad"]
    assert bad["status"] == "failed"
    error = bad["error"] or ""
    assert "'counter'" in error and tool in error, error
    for words in says:
        assert words in error, error
    assert doc["agents"]["good"]["status"] == "done", doc["agents"]["good"]["error"]
    assert [c["ok"] for c in doc["agents"]["good"]["tool_calls"]] == [True]
    # No server (nor the leash around it) outlives the run.
    pids = {counter_state(bad_state)["pid"], counter_state(good_state)["pid"]}
    assert wait_gone(pids | _server_processes(bad_state) | _server_processes(good_state)) == set()


# -- no orphans after Ctrl-C or kill -9 -----------------------------------------------------------


def _hanging(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, set[int]]:
    """``hct perform`` whose agent's tool call hangs; returns once the call is journaled as sent,
    with the processes below the conductor (the stdio server among them)."""
    state = tmp_path / "hang.json"
    tools = {"counter": stdio_server(state)}
    agents = {
        "stuck": {
            "prompt": "Hang.",
            "tools": ["counter.hang"],
            "max_steps": 2,
            "timeout_s": 600,
            "simulate": rounds([("counter.hang", {})]),
        }
    }
    score = write_score(tmp_path, tools, agents)
    proc = subprocess.Popen(
        [*HCT, "perform", str(score), *PERFORM, "--allow-exec"],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not _tool_call_sent(tmp_path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the hanging call was never sent"
        time.sleep(0.05)
    below = descendants(proc.pid)
    server = counter_state(state)["pid"]
    assert server in below
    return proc, state, below


def _tool_call_sent(home: Path) -> bool:
    if not (home / "hct.db").exists():
        return False
    try:
        with closing(sqlite3.connect(home / "hct.db", timeout=1)) as db:
            return bool(db.execute("SELECT count(*) FROM events WHERE kind = 'tool_call'").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or busy
        return False


def test_ctrl_c_while_a_tool_call_hangs_interrupts_the_run_and_stops_the_server(tmp_path: Path) -> None:
    proc, state, below = _hanging(tmp_path)
    try:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert proc.returncode != 0
    assert json.loads(out)["status"] == "interrupted"
    assert "interrupted" in err
    assert wait_gone(below | _server_processes(state)) == set()


def test_kill_9_of_the_conductor_leaves_no_server_behind(tmp_path: Path) -> None:
    proc, state, below = _hanging(tmp_path)
    try:
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in KILLED
    assert wait_gone(below | _server_processes(state)) == set()
