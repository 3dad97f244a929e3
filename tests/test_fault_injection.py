"""Fault injection: kill -9 a simulated run at many points, resume it, get the same run.

``HCT_FAULT=mid:K`` makes the process SIGKILL itself while the SQLite transaction holding the
K-th journaled call result is open (that transaction is lost); ``HCT_FAULT=after:K`` right after
it commits. For every example score (and fixtures with coherence hold, speculation and vamps), at
every kill point, the crashed run must complete with one ``--resume``, pay for exactly the calls
an uninterrupted run with the same seed pays for, end with the same outputs and shared state, and
report as ``cost_usd`` the sum of the paid calls ``hct show`` lists. So must a run killed again
during its resume, resumed once more.

Each score runs at a time scale at which no two results that the run's decisions depend on the
order of arrive close together (collab-writing's three writers commit every few hundred
simulated milliseconds, so it runs slower than the others): the uninterrupted run is then a
reference, which the fixture checks by running it twice.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RESOURCES = Path(__file__).resolve().parent / "resources" / "scores"
EXAMPLES = Path(__file__).resolve().parents[1] / "scores"
SCORE = RESOURCES / "durable.yaml"
SEED = 7
TIME_SCALE = "0.05"
WORKERS = 4  # the runs mostly sleep out simulated latencies
KILLED = (-9, 137)  # SIGKILL as seen by subprocess, or as a shell reports it

#: Fields of the run document that measure wall time (or the segment) rather than the run.
_TIMING = {"run_id", "makespan_s", "critical_path_s", "hold_s", "lost_calls", "segment", "segments", "calls"}
_AGENT_TIMING = {"started_s", "finished_s"}

_RUN_ID = re.compile(r"^(?:run|resuming run) ([0-9a-f]+)\b")


def _hct() -> list[str]:
    import hct_cli

    if (Path(hct_cli.__file__).parent / "__main__.py").exists():
        return [sys.executable, "-m", "hct_cli"]
    script = Path(sys.executable).parent / "hct"
    assert script.exists(), f"no hct console script next to {sys.executable}"
    return [str(script)]


HCT = _hct()


def _env(home: Path, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HCT_FAULT", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env.update(HCT_HOME=str(home), NO_COLOR="1", LITELLM_LOCAL_MODEL_COST_MAP="True")
    if fault is not None:
        env["HCT_FAULT"] = fault
    return env


def _hct_run(home: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HCT, *args], env=_env(home, fault), cwd=home, capture_output=True, text=True, timeout=60, check=False
    )


@dataclass(frozen=True)
class Case:
    """A score the suite kills and resumes, and the time scale its reference run is stable at."""

    score: Path
    time_scale: str = "0.1"

    @property
    def id(self) -> str:
        return self.score.stem


CASES = (
    Case(SCORE, TIME_SCALE),
    Case(EXAMPLES / "code-review.yaml"),
    Case(EXAMPLES / "collab-writing.yaml", "0.5"),
    Case(EXAMPLES / "mixed-workload.yaml"),
    Case(EXAMPLES / "release-gate.yaml"),
    Case(EXAMPLES / "research-brief.yaml"),
    Case(EXAMPLES / "shared-context.yaml"),
    Case(RESOURCES / "hold-speculate.yaml"),
)
DURABLE = CASES[0]


def _perform(home: Path, fault: str | None = None, case: Case = DURABLE) -> subprocess.CompletedProcess[str]:
    options = ["--simulate", "--seed", str(SEED), "--no-cache", "--json", "--time-scale", case.time_scale]
    return _hct_run(home, "perform", str(case.score), *options, fault=fault)


def _run_id(proc: subprocess.CompletedProcess[str]) -> str:
    first = proc.stderr.splitlines()[0] if proc.stderr else ""
    match = _RUN_ID.match(first)
    assert match, f"no run id on stderr's first line: {proc.stderr!r}"
    return match.group(1)


def _document(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def _comparable(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The run without what depends on wall time: every agent's output, version, calls, cost, ..."""
    out = {k: v for k, v in doc.items() if k not in _TIMING and k != "agents"}
    out["agents"] = {
        name: {k: v for k, v in agent.items() if k not in _AGENT_TIMING} for name, agent in doc["agents"].items()
    }
    return out


def _paid_keys(show: Mapping[str, Any]) -> list[tuple[str, int, str, str, float]]:
    """The journaled calls of ``hct show --json`` that were paid for (not served by the cache)."""
    return sorted(
        (c["agent"], c["version"], c.get("purpose", "call"), c["model"], c["cost_usd"])
        for c in show["calls"]
        if not c["cached"]
    )


def _paid_sum(show: Mapping[str, Any]) -> float:
    total: float = sum(c["cost_usd"] for c in show["calls"] if not c["cached"])
    return total


@dataclass(frozen=True)
class Reference:
    case: Case
    doc: dict[str, Any]
    show: dict[str, Any]

    @property
    def results(self) -> int:
        """Journaled call results of the uninterrupted run: the range of K for HCT_FAULT."""
        return len(self.show["calls"])


_REFERENCES: dict[Case, Reference] = {}


def _reference(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    if case not in _REFERENCES:
        home = tmp_path_factory.mktemp(f"reference-{case.id}")
        first = _perform(home, case=case)
        doc = _document(first)
        show = json.loads(_hct_run(home, "show", _run_id(first), "--json").stdout)
        # The comparison below is only meaningful if the run is reproducible at all.
        again = _document(_perform(tmp_path_factory.mktemp(f"reference-again-{case.id}"), case=case))
        assert _comparable(again) == _comparable(doc)
        assert doc["status"] == "completed"
        assert doc["cost_usd"] == pytest.approx(_paid_sum(show), rel=1e-9, abs=1e-12)
        _REFERENCES[case] = Reference(case, doc, show)
    return _REFERENCES[case]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return _reference(DURABLE, tmp_path_factory)


@pytest.fixture(scope="module", params=CASES, ids=[case.id for case in CASES])
def scored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    case: Case = request.param
    return _reference(case, tmp_path_factory)


#: Example scores that wait for a person and act on a repository the test makes: their kills
#: between a tool call and its journaled result are tests/test_tool_faults.py's.
PERSON_GATED = frozenset({EXAMPLES / "repo-review.yaml"})


def test_every_example_score_is_killed_and_resumed() -> None:
    assert {case.score for case in CASES} >= set(EXAMPLES.glob("*.yaml")) - PERSON_GATED


def test_reference_run_exercises_the_score(reference: Reference) -> None:
    doc = reference.doc
    assert doc["status"] == "completed"
    assert doc["lost_calls"] == 0
    agents = doc["agents"]
    assert len(agents) >= 10
    assert agents["check_sources"]["status"] == "tacet"
    assert agents["check_sources"]["calls"] == 0
    assert agents["draft"]["version"] == 3  # the vamp's three passes
    assert agents["outline"]["calls"] == 2  # the fermata failed once and retried
    assert all(a["status"] == "done" for n, a in agents.items() if n != "check_sources")
    assert doc["replays"] == 0 and doc["stale_reads"] == 0  # nothing depends on timing
    assert len(doc["state"]["notes"]) == 3 and len(doc["state"]["issues"]) == 2
    assert doc["state"]["final"] == agents["publish"]["output"]
    assert doc["paid_calls"] == sum(a["calls"] for a in agents.values()) == reference.results
    assert len(set(_paid_keys(reference.show))) == doc["paid_calls"]
    assert doc["cost_usd"] > 0


def _kill_points(results: int) -> list[str]:
    return [f"{mode}:{k}" for k in range(1, results + 1) for mode in ("mid", "after")]


@dataclass
class Outcome:
    fault: str
    crashed: subprocess.CompletedProcess[str]
    crashed_status: str
    resumed: subprocess.CompletedProcess[str]
    show: dict[str, Any]


def _status_of(home: Path, run_id: str) -> str:
    """The journal's status of a run (read in this process: one subprocess fewer per kill point)."""
    from hct_cli.store.runs import find_run

    db = sqlite3.connect(home / "hct.db")
    try:
        return find_run(db, run_id).status
    finally:
        db.close()


def _crash_and_resume(root: Path, fault: str, case: Case = DURABLE, again: str | None = None) -> Outcome:
    """Crash at ``fault``; resume (with ``again``, crash that resume too and resume once more)."""
    home = root / f"{case.id}-{fault.replace(':', '-')}"
    home.mkdir()
    crashed = _perform(home, fault, case)
    run_id = _run_id(crashed)
    status = _status_of(home, run_id)
    resumed = _hct_run(home, "perform", "--resume", run_id, "--json", fault=again)
    if again is not None:
        if resumed.returncode not in KILLED:
            resumed = subprocess.CompletedProcess(resumed.args, 1, "", f"the resume was not killed at {again}")
        else:
            resumed = _hct_run(home, "perform", "--resume", run_id, "--json")
    show = json.loads(_hct_run(home, "show", run_id, "--json").stdout or "{}")
    return Outcome(fault, crashed, status, resumed, show)


def _same_run(o: Outcome, reference: Reference, segments: int = 2) -> None:
    """The resumed run is the uninterrupted one: outputs, state, paid calls, cost."""
    assert o.crashed.returncode in KILLED, f"exit {o.crashed.returncode}, stderr {o.crashed.stderr!r}"
    assert '"status": "completed"' not in o.crashed.stdout
    assert o.crashed_status == "crashed"
    doc = _document(o.resumed)
    assert doc["status"] == "completed"
    assert doc["segment"] == segments
    assert doc["paid_calls"] == reference.doc["paid_calls"]
    assert doc["lost_calls"] >= 0
    assert doc["cost_usd"] == pytest.approx(reference.doc["cost_usd"], rel=1e-9, abs=1e-12)
    assert doc["state"] == reference.doc["state"]
    assert {n: a["output"] for n, a in doc["agents"].items()} == {
        n: a["output"] for n, a in reference.doc["agents"].items()
    }
    assert _comparable(doc) == _comparable(reference.doc)
    # The journal agrees: each call paid once, the same calls as the uninterrupted run.
    assert o.show["status"] == "completed"
    assert o.show["paid_calls"] == reference.doc["paid_calls"]
    assert o.show["lost_calls"] == doc["lost_calls"]
    assert _paid_keys(o.show) == _paid_keys(reference.show)
    # What the run says it cost is what the journal lists as paid.
    assert doc["cost_usd"] == pytest.approx(_paid_sum(o.show), rel=1e-9, abs=1e-12)
    assert o.show["cost_usd"] == pytest.approx(_paid_sum(o.show), rel=1e-9, abs=1e-12)


def _failures(outcomes: list[Outcome], reference: Reference, segments: int = 2) -> list[str]:
    failures: list[str] = []
    for o in outcomes:
        try:
            _same_run(o, reference, segments)
        except (AssertionError, ValueError, KeyError) as exc:
            failures.append(f"{reference.case.id} HCT_FAULT={o.fault}: {exc}")
    return failures


@pytest.mark.timeout(300)
def test_kill_anywhere_then_resume_gives_the_same_run(reference: Reference, tmp_path: Path) -> None:
    points = _kill_points(reference.results)
    assert len(points) >= 20
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda fault: _crash_and_resume(tmp_path, fault), points))
    failures = _failures(outcomes, reference)
    assert not failures, f"{len(failures)} of {len(outcomes)} kill points failed:\n" + "\n".join(failures)
    # A transaction lost mid-commit held a paid result: the journal counts it as lost.
    assert sum(_document(o.resumed)["lost_calls"] > 0 for o in outcomes if o.fault.startswith("mid:")) > 0


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_every_score_killed_anywhere_resumes_to_the_same_run(scored: Reference, tmp_path: Path) -> None:
    """Every score at every kill point, then twice more: killed again during its resume."""
    if scored.case == DURABLE:
        pytest.skip("durable.yaml's kill points are test_kill_anywhere_then_resume_gives_the_same_run")
    n = scored.results
    points = _kill_points(n)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda fault: _crash_and_resume(tmp_path, fault, scored.case), points))
    failures = _failures(outcomes, scored)
    assert not failures, f"{len(failures)} of {len(outcomes)} kill points failed:\n" + "\n".join(failures)


@pytest.mark.timeout(300)
def test_a_kill_during_the_resume_then_another_resume_gives_the_same_run(scored: Reference, tmp_path: Path) -> None:
    n = scored.results
    twice = [(f"after:{max(1, n // 3)}", "mid:1"), (f"mid:{max(1, n // 2)}", "after:1")]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda f: _crash_and_resume(tmp_path, f[0], scored.case, again=f[1]), twice))
    failures = _failures(outcomes, scored, segments=3)
    assert not failures, f"{len(failures)} of {len(outcomes)} runs failed:\n" + "\n".join(failures)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", [DURABLE, CASES[2]], ids=lambda case: case.id)
def test_repeated_crashes_still_converge(case: Case, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Crash every segment after two more results; each resume makes progress until done, and
    the last one (its order rebuilt from every segment before it) is the uninterrupted run."""
    reference = _reference(case, tmp_path_factory)
    crashed = _perform(tmp_path, "after:2", case)
    assert crashed.returncode in KILLED
    run_id = _run_id(crashed)
    segment = 1
    while True:
        segment += 1
        proc = _hct_run(tmp_path, "perform", "--resume", run_id, "--json", fault="after:2")
        if proc.returncode not in KILLED:
            break
        assert segment <= reference.results, f"still crashing after {segment - 1} resumes"
    doc = _document(proc)
    assert doc["status"] == "completed"
    assert doc["segment"] == segment
    assert segment >= 3  # it did crash more than once
    assert doc["paid_calls"] == reference.doc["paid_calls"]
    assert _comparable(doc) == _comparable(reference.doc)
    show = json.loads(_hct_run(tmp_path, "show", run_id, "--json").stdout)
    assert _paid_keys(show) == _paid_keys(reference.show)
    assert doc["cost_usd"] == pytest.approx(_paid_sum(show), rel=1e-9, abs=1e-12)


@pytest.mark.timeout(60)
def test_resuming_a_completed_run_pays_nothing(reference: Reference, tmp_path: Path) -> None:
    first = _document(_perform(tmp_path))
    show_before = json.loads(_hct_run(tmp_path, "show", first["run_id"], "--json").stdout)
    again = _document(_hct_run(tmp_path, "perform", "--resume", first["run_id"], "--json"))
    show_after = json.loads(_hct_run(tmp_path, "show", first["run_id"], "--json").stdout)
    assert again["run_id"] == first["run_id"]
    assert again["status"] == "completed"
    assert again["paid_calls"] == first["paid_calls"] == reference.doc["paid_calls"]
    assert again["lost_calls"] == 0
    assert again["cost_usd"] == first["cost_usd"]
    # The whole run is printed again, not just the (empty) new segment.
    assert set(again["agents"]) == set(first["agents"])
    assert _comparable(again) == _comparable(first) == _comparable(reference.doc)
    assert _paid_keys(show_after) == _paid_keys(show_before)
    assert show_after["paid_calls"] == show_before["paid_calls"]
    assert show_after["cost_usd"] == show_before["cost_usd"]
