"""``hct runs``, ``hct show``, ``hct approve`` / ``reject``, the L5 cache and ``--resume`` through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hct_cli.cli import app
from hct_cli.cli.app import _spell_out
from hct_cli.engine.events import Event
from hct_cli.run.config import RunConfig
from hct_cli.store.home import connect
from hct_cli.store.journal import Journal, next_verdict

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
HCT = [sys.executable, "-c", "from hct_cli.cli import main; main()"]
FAST = ["--simulate", "--time-scale", "0.05"]
TINY = "hct: 1\nname: tiny\nagents:\n  a: {prompt: hi}\n  b: {prompt: there, cues: [a]}\n"


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    # No traceback ever: an error leaves through the boundary as an exit code.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def perform(score: Path, *extra: str) -> dict[str, Any]:
    result = invoke("perform", str(score), *FAST, "--json", *extra)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def show(run_id: str) -> dict[str, Any]:
    result = invoke("show", run_id, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def runs_json(*extra: str) -> list[dict[str, Any]]:
    result = invoke("runs", "--json", *extra)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


@pytest.fixture
def code_review(repo: Path) -> Path:
    return repo / "scores" / "code-review.yaml"


def _agents(score: Path) -> dict[str, list[str]]:
    """Each agent's cues, as the score declares them."""
    from hct_cli.score import load_score

    return {name: list(agent.cues) for name, agent in load_score(score).agents.items()}


def _dependents(cues: dict[str, list[str]], changed: str) -> set[str]:
    """Every agent that cues, directly or through others, on ``changed``."""
    found: set[str] = set()
    frontier = {changed}
    while frontier:
        frontier = {name for name, on in cues.items() if frontier & set(on)} - found
        found |= frontier
    return found


def _by_agent(calls: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    assert Counter(call["agent"] for call in calls).most_common(1)[0][1] == 1, "an agent was called twice"
    return {call["agent"]: call for call in calls}


# -- hct runs ----------------------------------------------------------------------------------


def test_runs_on_an_empty_home() -> None:
    assert runs_json() == []
    text = invoke("runs")
    assert text.exit_code == 0
    assert text.stdout == ""
    assert "no runs yet" in text.stderr and "hct perform" in text.stderr


def test_runs_lists_newest_first_with_their_cost(code_review: Path) -> None:
    first = perform(code_review)
    second = perform(code_review, "--seed", "1")
    listed = runs_json()
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    for row, run in zip(listed, (second, first), strict=True):
        assert set(row) == {"run_id", "score", "status", "started_at", "cost_usd"}
        assert (row["score"], row["status"]) == ("code-review", "completed")
        assert row["cost_usd"] == pytest.approx(run["cost_usd"])
    assert listed[0]["started_at"] >= listed[1]["started_at"]
    assert [r["run_id"] for r in runs_json("--limit", "1")] == [second["run_id"]]
    assert [r["run_id"] for r in runs_json("-n", "5")] == [second["run_id"], first["run_id"]]
    text = invoke("runs")
    assert text.exit_code == 0
    for word in (first["run_id"], second["run_id"], "code-review", "completed", f"${first['cost_usd']:.4f}"):
        assert word in text.stdout


# -- hct show ----------------------------------------------------------------------------------


def test_show_is_perform_json_plus_the_calls(code_review: Path) -> None:
    data = perform(code_review)
    shown = show(data["run_id"][:6])  # a unique prefix will do
    for key in set(data) - {"segment"}:
        assert shown[key] == data[key], key
    assert shown["segments"] == data["segment"] == 1
    agents = set(_agents(code_review))
    calls = _by_agent(shown["calls"])
    assert set(calls) == agents
    for name, call in calls.items():
        assert set(call) == {"agent", "version", "model", "cost_usd", "cached", "worker"}
        assert call["version"] == 1 and call["cached"] is False
        assert call["model"] == data["agents"][name]["model"]
        assert call["cost_usd"] == pytest.approx(data["agents"][name]["cost_usd"])
    assert sum(c["cost_usd"] for c in shown["calls"]) == pytest.approx(data["cost_usd"])
    assert data["cost_usd"] > 0
    assert (shown["paid_calls"], shown["lost_calls"], shown["cached_calls"]) == (len(agents), 0, 0)


def test_show_prints_a_table_for_people(code_review: Path) -> None:
    data = perform(code_review)
    text = invoke("show", data["run_id"])
    assert text.exit_code == 0
    assert f"run {data['run_id']}: completed" in text.stdout
    assert (
        "parse" in text.stdout
        and "calls: 14 paid, 0 cached, 0 squashed, 0 lost to a crash or an interruption" in text.stdout
    )
    assert not text.stdout.lstrip().startswith("{")


def test_show_trace_writes_chrome_trace_events(code_review: Path, tmp_path: Path) -> None:
    data = perform(code_review)
    path = tmp_path / "trace.json"
    result = invoke("show", data["run_id"], "--trace", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.stderr
    assert json.loads(result.stdout)["run_id"] == data["run_id"]  # --json still prints the run
    trace = json.loads(path.read_text())
    assert isinstance(trace["traceEvents"], list)
    assert trace["otherData"] == {"run_id": data["run_id"], "score": "code-review"}
    calls = [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") == "call"]
    assert sorted(e["name"] for e in calls) == sorted(f"{name}@1" for name in _agents(code_review))
    for event in calls:
        assert event["ts"] >= 0 and event["dur"] >= 0 and event["pid"] == 1 and event["tid"] >= 1
        assert "output" not in event["args"]
    segments = [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") == "segment"]
    assert [e["name"] for e in segments] == ["segment 1"]


def test_show_trace_to_an_unwritable_path_is_a_usage_error(code_review: Path, tmp_path: Path) -> None:
    data = perform(code_review)
    result = invoke("show", data["run_id"], "--trace", str(tmp_path / "missing" / "trace.json"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr


def test_show_an_unknown_run(code_review: Path) -> None:
    perform(code_review)
    text = invoke("show", "no-such-run")
    assert text.exit_code == 1
    assert "error: no journaled run has the id 'no-such-run'" in text.stderr
    assert "hint: List the runs with `hct runs`." in text.stderr
    as_json = invoke("show", "no-such-run", "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {
        "error": {
            "type": "RunNotFoundError",
            "message": "no journaled run has the id 'no-such-run'",
            "hint": "List the runs with `hct runs`.",
        }
    }


def test_show_an_ambiguous_prefix() -> None:
    db = connect()
    for run_id in ("abc111", "abc222"):
        Journal.start(db, run_id, "tiny", None, TINY, RunConfig())
    result = invoke("show", "abc", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "RunNotFoundError" and error["message"] == "2 runs start with 'abc'"
    assert show("abc2")["run_id"] == "abc222"


def test_show_a_crashed_run_from_its_events() -> None:
    db = connect()
    journal = Journal.start(db, "crashed0001", "tiny", None, TINY, RunConfig())
    journal(Event("run_start", 0.0, None, 0, {"run_id": "crashed0001"}))
    journal(Event("issue", 0.1, "a", 1, {"model": "gpt-4o-mini", "tier": "mid"}))
    journal(
        Event(
            "result",
            0.2,
            "a",
            1,
            {"purpose": "call", "ok": True, "output": "A", "model": "gpt-4o-mini", "cost_usd": 0.5},
        )
    )
    journal(Event("cue", 0.2, "a", 1))
    journal(Event("issue", 0.3, "b", 1, {"model": "gpt-4o-mini", "tier": "mid"}))  # the process dies here
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    db.execute("UPDATE runs SET pid = ? WHERE run_id = 'crashed0001'", (child.pid,))
    assert runs_json()[0] == {
        "run_id": "crashed0001",
        "score": "tiny",
        "status": "crashed",
        "started_at": runs_json()[0]["started_at"],
        "cost_usd": 0.5,
    }
    shown = show("crashed")
    assert shown["status"] == "crashed"
    assert shown["cost_usd"] == 0.5
    assert shown["agents"]["a"]["status"] == "done" and shown["agents"]["a"]["output"] == "A"
    assert shown["agents"]["b"]["status"] == "running"
    assert (shown["paid_calls"], shown["lost_calls"], shown["segments"]) == (1, 1, 1)
    assert shown["calls"] == [
        {"agent": "a", "version": 1, "model": "gpt-4o-mini", "cost_usd": 0.5, "cached": False, "worker": None}
    ]
    text = invoke("show", "crashed0001")
    assert text.exit_code == 0 and "crashed" in text.stdout and "1 lost to a crash or an interruption" in text.stdout
    # A run that never ended has no makespan or counterfactual: none is printed as if it were 0.
    assert "cost $0.5000" in text.stdout and "makespan" not in text.stdout and "saving" not in text.stdout


# -- hct approve / reject ---------------------------------------------------------------------


def test_approve_and_reject_record_a_decision(code_review: Path) -> None:
    data = perform(code_review)
    run_id = data["run_id"]
    approved = invoke("approve", run_id[:5], "security", "--note", "checked by hand")
    assert approved.exit_code == 0, approved.output
    assert f"approved security of run {run_id}" in approved.stderr
    assert f"run {run_id} is completed; the decision applies if it resumes" in approved.stderr
    first = next_verdict(connect(), run_id, "security", 0)
    assert first is not None and first[1:] == ("approve", "checked by hand")
    rejected = invoke("reject", run_id, "security", "--json")
    assert rejected.exit_code == 0, rejected.output
    assert json.loads(rejected.stdout) == {"run_id": run_id, "agent": "security", "verdict": "reject"}
    second = next_verdict(connect(), run_id, "security", first[0])
    assert second is not None and second[1:] == ("reject", "")
    assert next_verdict(connect(), run_id, "docs", 0) is None


def test_approving_a_running_run_says_nothing_about_resuming() -> None:
    Journal.start(connect(), "live000001", "tiny", None, TINY, RunConfig())
    result = invoke("approve", "live", "b")
    assert result.exit_code == 0
    assert "note:" not in result.stderr and "approved b of run live000001" in result.stderr
    assert next_verdict(connect(), "live000001", "b", 0) is not None


def test_approve_an_unknown_agent_or_run(code_review: Path) -> None:
    run_id = perform(code_review)["run_id"]
    agent = invoke("approve", run_id, "nobody")
    assert agent.exit_code == 2
    assert f"error: run {run_id} (code-review) has no agent 'nobody'" in agent.stderr
    assert "hint: Agents: parse, security" in agent.stderr
    agent_json = invoke("reject", run_id, "nobody", "--json")
    assert agent_json.exit_code == 2
    assert json.loads(agent_json.stdout)["error"]["type"] == "UsageError"
    run = invoke("reject", "zzz", "security")
    assert run.exit_code == 1 and "error: no journaled run has the id 'zzz'" in run.stderr
    run_json = invoke("approve", "zzz", "security", "--json")
    assert run_json.exit_code == 1
    assert json.loads(run_json.stdout)["error"]["type"] == "RunNotFoundError"
    assert connect().execute("SELECT COUNT(*) FROM approvals").fetchone()[0] == 0


# -- the L5 cache ------------------------------------------------------------------------------


def test_an_unchanged_score_is_served_from_the_cache(code_review: Path) -> None:
    first = perform(code_review)
    assert (first["cached_calls"], first["paid_calls"]) == (0, 14)
    second = perform(code_review)
    assert second["status"] == "completed"
    assert second["cost_usd"] == 0
    assert second["paid_calls"] == 0
    calls = show(second["run_id"])["calls"]
    assert second["cached_calls"] == len(calls) == len(_agents(code_review))
    assert all(call["cached"] and call["cost_usd"] == 0 for call in calls)
    # the cache answers exactly as the models did
    assert {n: a["output"] for n, a in second["agents"].items()} == {n: a["output"] for n, a in first["agents"].items()}
    assert runs_json()[0]["cost_usd"] == 0


def test_no_cache_pays_again(code_review: Path) -> None:
    first = perform(code_review)
    again = perform(code_review, "--no-cache")
    assert (again["cached_calls"], again["paid_calls"]) == (0, 14)
    assert again["cost_usd"] == pytest.approx(first["cost_usd"]) and again["cost_usd"] > 0
    assert not any(call["cached"] for call in show(again["run_id"])["calls"])
    assert {n: a["output"] for n, a in again["agents"].items()} == {n: a["output"] for n, a in first["agents"].items()}


def test_another_seed_misses_the_cache(code_review: Path) -> None:
    seed0 = perform(code_review)
    seed1 = perform(code_review, "--seed", "1")
    assert (seed1["cached_calls"], seed1["paid_calls"]) == (0, 14)
    assert seed1["cost_usd"] > 0
    assert seed1["agents"]["parse"]["output"] != seed0["agents"]["parse"]["output"]
    assert perform(code_review, "--seed", "1")["cached_calls"] == 14
    assert perform(code_review, "--seed", "0")["cached_calls"] == 14


@pytest.mark.parametrize(
    ("agent", "old", "new"),
    [
        (
            "correctness",
            "Review these hunks for logic errors only",
            "Review these hunks for logic and race errors only",
        ),
        ("tests_followup", "most important first.", "most important first, at most five."),
    ],
)
def test_changing_one_prompt_pays_for_that_agent_and_its_dependents_only(
    code_review: Path, tmp_path: Path, agent: str, old: str, new: str
) -> None:
    score = tmp_path / "code-review.yaml"
    shutil.copy(code_review, score)
    shutil.copy(code_review.with_suffix(".diff"), tmp_path / "code-review.diff")
    before = perform(score)
    assert before["paid_calls"] == 14
    text = score.read_text()
    assert text.count(old) == 1
    score.write_text(text.replace(old, new))

    after = perform(score)
    cues = _agents(score)
    repaid = {agent} | _dependents(cues, agent)
    assert agent not in _dependents(cues, agent) and "aggregate" in repaid and "parse" not in repaid
    assert after["agents"][agent]["output"] != before["agents"][agent]["output"]  # the change reached the model
    calls = _by_agent(show(after["run_id"])["calls"])
    assert set(calls) == set(cues)
    paid = {name for name, call in calls.items() if not call["cached"]}
    assert paid == repaid
    for name, call in calls.items():
        if name in repaid:
            assert call["cost_usd"] == pytest.approx(before["agents"][name]["cost_usd"]), name
            assert (call["cost_usd"] > 0) == (before["agents"][name]["cost_usd"] > 0), name
        else:
            assert call["cost_usd"] == 0, name
    assert any(calls[name]["cost_usd"] > 0 for name in repaid)
    assert after["paid_calls"] == len(repaid)
    assert after["cached_calls"] == len(cues) - len(repaid)
    assert after["cost_usd"] == pytest.approx(sum(before["agents"][name]["cost_usd"] for name in repaid))


def test_dependents_follow_the_cues() -> None:
    cues = {"p": [], "a": ["p"], "b": ["a"], "c": ["p"], "d": ["b", "c"]}
    assert _dependents(cues, "a") == {"b", "d"}
    assert _dependents(cues, "p") == {"a", "b", "c", "d"}
    assert _dependents(cues, "d") == set()


# -- hct perform --resume ----------------------------------------------------------------------


def test_resume_of_a_completed_run_says_so_and_does_nothing(code_review: Path) -> None:
    first = perform(code_review)
    result = invoke("perform", "--resume", first["run_id"][:8], "--json")
    assert result.exit_code == 0, result.output
    assert f"run {first['run_id']} is completed: nothing to resume" in result.stderr
    document = json.loads(result.stdout)  # the run's document, as `hct show --json` prints it
    assert (document["run_id"], document["status"], document["segments"]) == (first["run_id"], "completed", 1)
    assert document["paid_calls"] == 14 and document["cost_usd"] == pytest.approx(first["cost_usd"])
    assert show(first["run_id"])["segments"] == 1  # no segment was added
    plain = invoke("perform", "--resume", first["run_id"])
    assert plain.exit_code == 0 and "nothing to resume" in plain.stderr and plain.stdout == ""


def _crash(score: Path, fault: str = "mid:5") -> str:
    """A run of ``score`` killed by HCT_FAULT; its id."""
    env = {**os.environ, "HCT_FAULT": fault}
    killed = subprocess.run([*HCT, "perform", str(score), *FAST, "--json"], env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    return killed.stderr.split()[1].rstrip(":")


def test_resume_without_a_run_resumes_the_latest_that_can_be_resumed(code_review: Path) -> None:
    older = _crash(code_review)
    crashed = _crash(code_review)
    perform(code_review)  # the newest run completed: nothing to resume there
    result = invoke(*_spell_out(["perform", "--resume", "--json"]))
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"resuming run {crashed}, the latest run to resume (crashed, started ")
    resumed = json.loads(result.stdout)
    assert (resumed["run_id"], resumed["status"], resumed["segment"]) == (crashed, "completed", 2)
    # Now the older crashed run is the latest one to resume.
    again = invoke(*_spell_out(["perform", "--resume"]))
    assert again.exit_code == 0, again.output
    assert f"resuming run {older}, the latest run to resume" in again.stderr
    assert {row["run_id"]: row["status"] for row in runs_json()}[older] == "completed"


def test_resume_without_a_run_when_none_can_be_resumed_fails_clearly(code_review: Path) -> None:
    empty = invoke(*_spell_out(["perform", "--resume"]))
    assert empty.exit_code == 1
    assert "error: no run to resume" in empty.stderr and "hint:" in empty.stderr
    perform(code_review)
    done = invoke(*_spell_out(["perform", "--resume", "--json"]))
    assert done.exit_code == 1
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "RunNotFoundError" and "no run to resume" in error["message"]
    assert len(runs_json()) == 1 and runs_json()[0]["status"] == "completed"


def test_resume_refuses_a_score_too(code_review: Path) -> None:
    run_id = perform(code_review)["run_id"]
    result = invoke("perform", str(code_review), "--resume", run_id)
    assert result.exit_code == 2 and "--resume takes the score" in result.stderr
    unknown = invoke("perform", "--resume", "nope", "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["error"]["type"] == "RunNotFoundError"


def test_a_killed_run_shows_as_crashed_and_resumes_without_paying_twice(code_review: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HCT_FAULT": "mid:5"}
    killed = subprocess.run(
        [*HCT, "perform", str(code_review), *FAST, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr
    [row] = runs_json()
    assert row["status"] == "crashed"
    crashed = show(row["run_id"])
    assert crashed["status"] == "crashed" and crashed["segments"] == 1
    journaled = {call["agent"] for call in crashed["calls"]}
    assert 1 <= len(journaled) < 5  # the fifth result died with its transaction
    assert crashed["paid_calls"] == len(crashed["calls"])
    assert crashed["lost_calls"] >= 1
    assert row["cost_usd"] == pytest.approx(sum(call["cost_usd"] for call in crashed["calls"]))

    result = invoke("perform", "--resume", row["run_id"], "--json")
    assert result.exit_code == 0, result.output
    resumed = json.loads(result.stdout)
    assert (resumed["status"], resumed["segment"]) == ("completed", 2)
    shown = show(row["run_id"])
    calls = _by_agent(shown["calls"])  # nothing journaled was called again
    assert set(calls) == set(_agents(code_review))
    assert shown["segments"] == 2 and shown["status"] == "completed"
    assert runs_json()[0]["status"] == "completed"
    path = tmp_path / "t.json"
    assert invoke("show", row["run_id"], "--trace", str(path)).exit_code == 0
    events = json.loads(path.read_text())["traceEvents"]
    # Each call journaled before the kill is answered from the journal: an instant, not a call.
    assert sum(1 for e in events if e.get("cat") == "restored") == len(crashed["calls"])
    assert [e["name"] for e in events if e.get("cat") == "segment"] == ["segment 1", "segment 2"]
