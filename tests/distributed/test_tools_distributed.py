"""A tool-using score in distributed mode, for real: ``hct perform --bus`` on a private
``redis-server`` with two real ``hct worker`` processes, and the in-tree counter server over stdio.

The model rounds travel: each round of a tool-using agent is a work item a worker answers (the
journal names the worker of every round). The tool calls stay home: the counter server is a
program the conductor starts (``--allow-exec``), so its environment is the conductor's (its
``env`` tool answers the conductor's ``HCT_TEST_ROLE``, never a worker's), and its state file
proves each write was made exactly once. The run ends as the same score in-process with the same
seed ends: the same tool calls, tool answers, outputs and cost.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.test_failover import (
    HCT,
    Processes,
    _document,
    _env,
    _events,
    _journal,
    _worker,
    processes,
)
from tests.tools.servers import counter_state, counter_stdio_argv

assert processes  # the fixture, imported for this module's tests

pytestmark = pytest.mark.timeout(120)

SEED = "5"
OPTIONS = ("--simulate", "--seed", SEED, "--no-cache", "--json", "--no-tui", "--time-scale", "0.05", "--allow-exec")


def _score(path: Path, state: Path) -> Path:
    """Two tool-using agents side by side (reads, a write each, the server's environment) and
    a third that quotes both, so a wrong tool answer or output upstream shows downstream.

    Each agent writes to a server of its own (``counter`` keeps its state in ``state``,
    ``ledger`` beside it): an ``append`` answers its count, which on a shared server would
    depend on which write came first."""

    def calls(*pairs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"tool": tool, "args": args} for tool, args in pairs]

    score = {
        "hct": 1,
        "name": "tools-distributed",
        "tools": {
            "counter": {
                "command": counter_stdio_argv(state),
                "env": ["HCT_TEST_ROLE"],
                "effects": "read",
                "concurrency": 2,
                "tools": {"append": {"effects": "write"}},
            },
            "ledger": {
                "command": counter_stdio_argv(_ledger(state)),
                "effects": "read",
                "tools": {"append": {"effects": "write"}},
            },
        },
        "agents": {
            "scout": {
                "prompt": "Look around, note it, then answer.",
                "tools": ["counter.echo", "counter.env", "counter.append"],
                "max_steps": 3,
                "simulate": {
                    "latency_ms": [100, 300],
                    "tool_calls": [
                        calls(("counter.echo", {"text": "hello"}), ("counter.env", {"name": "HCT_TEST_ROLE"})),
                        calls(("counter.append", {"text": "scout was here"})),
                    ],
                },
            },
            "timer": {
                "prompt": "Wait, note it, then answer.",
                "tools": ["counter.slow", "ledger.append"],
                "max_steps": 3,
                "simulate": {
                    "latency_ms": [100, 300],
                    "tool_calls": [
                        calls(("counter.slow", {"ms": 60, "text": "a"}), ("counter.slow", {"ms": 80, "text": "b"})),
                        calls(("ledger.append", {"text": "timer was here"})),
                    ],
                },
            },
            "editor": {
                "prompt": "Sum up: {{ cues.scout }} / {{ cues.timer }}",
                "cues": ["scout", "timer"],
                "simulate": {"latency_ms": [100, 300]},
            },
        },
    }
    path.write_text(json.dumps(score))
    return path


def _ledger(state: Path) -> Path:
    return state.with_name("ledger-" + state.name)


def _tool_answers(home: Path, run: str) -> list[tuple[str, int, str, str, str]]:
    """(agent, step, tool, digest, text) of every tool_result the run journaled, sorted."""
    path = home / "hct.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT station, data FROM events WHERE run_id = ? AND kind = 'tool_result'", (run,)
        ).fetchall()
    answers = [(station, json.loads(data)) for station, data in rows]
    return sorted((s, d["step"], d["tool"], d["digest"], d["text"]) for s, d in answers)


def _shape(doc: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between the two runs: per agent, its output, calls, cost and tool calls."""
    return {
        name: {
            "status": agent["status"],
            "output": agent["output"],
            "calls": agent["calls"],
            "cost_usd": agent["cost_usd"],
            "frontier_cost_usd": agent["frontier_cost_usd"],
            "tool_calls": [
                (c["step"], c["index"], c["tool"], c["digest"], c["ok"]) for c in agent.get("tool_calls", ())
            ],
        }
        for name, agent in doc["agents"].items()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Any]]:
    """The score in-process (no bus), in a home of its own: its document and its tool answers."""
    home = tmp_path_factory.mktemp("reference-home")
    state = home / "counter.json"
    score = _score(home / "score.yaml", state)
    env = {**_env(home), "HCT_TEST_ROLE": "conductor"}
    proc = subprocess.run(
        [*HCT, "perform", str(score), *OPTIONS], env=env, capture_output=True, text=True, timeout=90, cwd=home
    )
    assert proc.returncode == 0, proc.stderr
    doc = _document(proc.stdout, proc.stderr, proc.returncode)
    assert doc["status"] == "completed"
    assert all(agent["worker"] is None for agent in doc["agents"].values())
    assert counter_state(state)["appends"] == counter_state(_ledger(state))["appends"] == 1
    return doc, _tool_answers(home, doc["run_id"])


def test_a_tool_using_score_runs_its_rounds_on_workers_and_its_tools_at_the_conductor(
    reference: tuple[dict[str, Any], list[Any]], redis_server: Any, processes: Processes, tmp_path: Path
) -> None:
    expected, expected_answers = reference
    state = tmp_path / "counter.json"
    score = _score(tmp_path / "score.yaml", state)
    os.environ["HCT_TEST_ROLE"] = "worker"  # what the workers' environment says (they start with it)
    try:
        workers = [_worker(processes, redis_server.url, name) for name in ("wA", "wB")]
    finally:
        del os.environ["HCT_TEST_ROLE"]
    home = Path(os.environ["HCT_HOME"])
    proc = subprocess.run(
        [*HCT, "perform", str(score), *OPTIONS, "--bus", redis_server.url],
        env={**_env(), "HCT_TEST_ROLE": "conductor"},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = _document(proc.stdout, proc.stderr, proc.returncode)
    run = doc["run_id"]
    for worker in workers:
        worker.popen.terminate()
    reports = []
    for worker in workers:
        assert worker.wait() == 0, worker.stderr
        reports.append(worker.document())

    # The same run as in-process: tool calls, outputs, cost.
    assert doc["status"] == "completed"
    assert _shape(doc) == _shape(expected)
    assert doc["cost_usd"] == pytest.approx(expected["cost_usd"])
    assert doc["frontier_cost_usd"] == pytest.approx(expected["frontier_cost_usd"])
    assert doc["paid_calls"] == expected["paid_calls"] == 2 + 2 + 1 + 2  # two rounds each, three answers

    # Every model round was a work item a worker answered, journaled with its worker.
    results = _events(run, "result")
    rounds = [(s, d) for s, _v, d in results if d.get("purpose") == "round"]
    assert sorted((s, d["step"]) for s, d in rounds) == [("scout", 0), ("scout", 1), ("timer", 0), ("timer", 1)]
    assert all(d.get("worker") in ("wA", "wB") for _s, _v, d in results), results
    assert len(results) == doc["paid_calls"]
    assert sum(report["completed"] for report in reports) == doc["paid_calls"]
    assert {agent["worker"] for agent in doc["agents"].values()} <= {"wA", "wB"}

    # Every tool call was made by the conductor: journaled there, answered by the server it
    # started (whose environment is the conductor's), each write exactly once.
    answers = _tool_answers(home, run)
    assert answers == expected_answers
    (role,) = [text for agent, _step, tool, _d, text in answers if tool == "counter.env"]
    assert role == "conductor"
    assert (counter_state(state)["appends"], counter_state(state)["log"]) == (1, ["scout was here"])
    assert (counter_state(_ledger(state))["appends"], counter_state(_ledger(state))["log"]) == (1, ["timer was here"])
    sent = _journal("SELECT COUNT(*) FROM events WHERE run_id = ? AND kind = 'tool_call'", run)
    assert sent == [(len(answers),)] and len(answers) == 6
    assert all(not report.get("failed") for report in reports)
