"""Tool servers ``on: worker``, for real: ``hct perform --bus`` on a private ``redis-server`` with
real ``hct worker`` processes running the in-tree counter server over stdio.

The server runs where the workers run: its environment is a worker's (its ``env`` tool answers
the workers' ``HCT_TEST_ROLE``), it starts only with the worker's consent (``hct worker
--allow-exec``; the conductor needs none), one worker is its home for the run, and it stops when
the run ends. The conductor still journals every call before issuing it; a write that a worker
was killed in the middle of is never made again by the worker that takes the item over: the
agent stops as ``needs_attention``, and the server's counter proves the write happened once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.test_failover import HCT, Processes, _document, _env, _events, _worker, processes
from tests.tools.servers import counter_state, counter_stdio_argv, wait_gone

assert processes  # the fixture, imported for this module's tests

pytestmark = pytest.mark.timeout(120)

OPTIONS = ("--simulate", "--seed", "4", "--no-cache", "--json", "--no-tui", "--time-scale", "0.05")
FAST_CLAIM = ("--claim-after", "1.5", "--heartbeat", "0.25")


def _score(path: Path, state: Path, agents: dict[str, Any]) -> Path:
    score = {
        "hct": 1,
        "name": "tools-on-worker",
        "tools": {
            "counter": {
                "command": counter_stdio_argv(state),
                "env": ["HCT_TEST_ROLE"],
                "effects": "read",
                "on": "worker",
                "tools": {"append": {"effects": "write"}, "append_slow": {"effects": "write"}},
            }
        },
        "agents": agents,
    }
    path.write_text(json.dumps(score))
    return path


def _rounds(*rounds: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"latency_ms": [100, 200], "tool_calls": [[{"tool": t, "args": a} for t, a in r] for r in rounds]}


SCOUT = {
    "prompt": "Look around, note it, then answer.",
    "tools": ["counter.echo", "counter.env", "counter.append"],
    "max_steps": 3,
    "simulate": _rounds(
        [("counter.echo", {"text": "hello"}), ("counter.env", {"name": "HCT_TEST_ROLE"})],
        [("counter.append", {"text": "scout was here"})],
    ),
}


@contextlib.contextmanager
def _role(role: str) -> Iterator[None]:
    """Processes started inside see HCT_TEST_ROLE=role (the workers' environment)."""
    os.environ["HCT_TEST_ROLE"] = role
    try:
        yield
    finally:
        del os.environ["HCT_TEST_ROLE"]


def _perform(score: Path, url: str, cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [*HCT, "perform", str(score), *OPTIONS, "--bus", url],
        env={**_env(), "HCT_TEST_ROLE": "conductor"},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
    )
    return _document(proc.stdout, proc.stderr, proc.returncode)


def test_a_server_on_worker_runs_on_one_worker_with_its_environment_and_stops_with_the_run(
    redis_server: Any, processes: Processes, tmp_path: Path
) -> None:
    state = tmp_path / "counter.json"
    score = _score(tmp_path / "score.yaml", state, {"scout": SCOUT, "plain": {"prompt": "Hi."}})
    with _role("worker"):
        workers = [_worker(processes, redis_server.url, name, "--allow-exec") for name in ("wA", "wB")]
    doc = _perform(score, redis_server.url, tmp_path)  # no --allow-exec: the conductor starts nothing
    run = doc["run_id"]
    assert doc["status"] == "completed", doc

    # Each call journaled as sent before its answer, and answered by the one worker that runs it.
    calls = _events(run, "tool_call")
    answers = _events(run, "tool_result")
    assert sorted(d["tool"] for _s, _v, d in answers) == ["counter.append", "counter.echo", "counter.env"]
    homes = {d.get("worker") for _s, _v, d in answers}
    assert len(homes) == 1 and homes <= {"wA", "wB"}, answers
    assert {d["digest"] for _s, _v, d in calls} == {d["digest"] for _s, _v, d in answers}
    by_kind = _journal_order(run)
    assert all(by_kind[("tool_call", d)] < by_kind[("tool_result", d)] for d in {d["digest"] for *_, d in calls})
    (role,) = [d["text"] for _s, _v, d in answers if d["tool"] == "counter.env"]
    assert role == "worker"  # the worker's environment, never the conductor's
    scout = doc["agents"]["scout"]
    assert {c["worker"] for c in scout["tool_calls"]} == homes
    assert counter_state(state)["appends"] == 1
    shown = subprocess.run(
        [*HCT, "show", run, "--json"], env=_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert {c["worker"] for c in json.loads(shown.stdout)["tool_calls"]} == homes
    plain = subprocess.run([*HCT, "show", run], env=_env(), capture_output=True, text=True, timeout=60, check=True)
    assert f"on {next(iter(homes))}" in plain.stdout

    # The run is over: its worker stops the server, and goes on serving.
    pid = counter_state(state)["pid"]
    assert not wait_gone({pid}), "the server outlived its run"
    assert all(worker.running() for worker in workers)
    for worker in workers:
        worker.popen.terminate()
    reports = [(worker.wait(), worker.document()) for worker in workers]
    assert all(code == 0 for code, _ in reports)
    assert sum(report["completed"] for _, report in reports) >= doc["paid_calls"] + 4  # 3 calls and a listing


def test_a_worker_without_consent_starts_no_program_and_the_agent_says_how_to_allow_it(
    redis_server: Any, processes: Processes, tmp_path: Path
) -> None:
    state = tmp_path / "counter.json"
    score = _score(tmp_path / "score.yaml", state, {"scout": SCOUT, "plain": {"prompt": "Hi."}})
    workers = [_worker(processes, redis_server.url, "wA")]  # no --allow-exec, nothing trusted
    doc = _perform(score, redis_server.url, tmp_path)
    scout = doc["agents"]["scout"]
    assert scout["status"] == "failed"
    assert "on worker wA" in scout["error"] and "runs a program" in scout["error"], scout
    assert "--allow-exec" in scout.get("hint", "") + scout["error"], scout
    assert doc["agents"]["plain"]["status"] == "done"  # the run went on
    assert not state.exists()  # nothing started anywhere
    workers[0].popen.terminate()
    assert workers[0].wait() == 0


def test_a_write_cut_off_by_kill_9_of_its_worker_is_not_made_again_by_the_next(
    redis_server: Any, processes: Processes, tmp_path: Path
) -> None:
    state = tmp_path / "counter.json"
    writer = {
        "prompt": "Write it down.",
        "tools": ["counter.append_slow"],
        "max_steps": 2,
        "timeout_s": 120,
        "simulate": _rounds([("counter.append_slow", {"text": "once", "ms": 60_000})]),
    }
    score = _score(tmp_path / "score.yaml", state, {"writer": writer})
    first = _worker(processes, redis_server.url, "wA", "--allow-exec", *FAST_CLAIM)
    conductor = subprocess.Popen(
        [*HCT, "perform", str(score), *OPTIONS, "--bus", redis_server.url],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 40
        while not (state.exists() and counter_state(state)["appends"] == 1):
            assert conductor.poll() is None, conductor.communicate()
            assert time.monotonic() < deadline, "the write never reached the server"
            time.sleep(0.05)
        server = counter_state(state)["pid"]
        first.popen.kill()  # mid-call: the write has happened, its answer has not
        assert first.popen.wait(10) != 0
        assert not wait_gone({server}), "the server outlived its worker"
        _worker(processes, redis_server.url, "wB", "--allow-exec", *FAST_CLAIM)  # takes the item over
        out, err = conductor.communicate(timeout=60)
    finally:
        if conductor.poll() is None:
            conductor.kill()
            conductor.communicate()
    doc = _document(out, err, conductor.returncode)
    agent = doc["agents"]["writer"]
    assert agent["status"] == "needs_attention", agent
    assert "may have happened" in agent["error"]
    assert agent["needs_attention"]["tool"] == "counter.append_slow"
    assert agent["needs_attention"]["arguments"] == {"text": "once", "ms": 60_000}
    assert doc["status"] != "completed" and conductor.returncode == 1
    assert counter_state(state)["appends"] == 1 and counter_state(state)["log"] == ["once"]
    # Resumed, it stays stopped: the journal holds the call as sent, never answered.
    resumed = subprocess.run(
        [*HCT, "perform", "--resume", doc["run_id"], "--json", "--no-tui"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    again = _document(resumed.stdout, resumed.stderr, resumed.returncode)["agents"]["writer"]
    assert (resumed.returncode, again["status"]) == (1, "needs_attention"), resumed.stderr
    # wB started the server afresh for the resumed run (its state file starts over): no write since.
    assert counter_state(state)["appends"] == 0
    sent = [d for _s, _v, d in _events(doc["run_id"], "tool_call") if d["tool"] == "counter.append_slow"]
    assert len(sent) == 1


def _journal_order(run: str) -> dict[tuple[str, str], int]:
    """(kind, digest) -> the journal's sequence of each tool event of ``run``."""
    path = Path(os.environ["HCT_HOME"]) / "hct.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT segment * 1000000000 + seq, kind, data FROM events WHERE run_id = ? AND kind IN ('tool_call', 'tool_result')",
            (run,),
        ).fetchall()
    return {(kind, json.loads(data)["digest"]): rowid for rowid, kind, data in rows}
