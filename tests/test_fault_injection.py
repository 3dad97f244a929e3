"""Fault injection: kill -9 a simulated run at many points, resume it, get the same run.

``HCT_FAULT=mid:K`` makes the process SIGKILL itself while the SQLite transaction holding the
K-th journaled call result is open (that transaction is lost); ``HCT_FAULT=after:K`` right after
it commits. For every kill point the crashed run must complete with one ``--resume``, pay for
exactly the calls an uninterrupted run with the same seed pays for, and end with the same
outputs and shared state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SCORE = Path(__file__).resolve().parent / "resources" / "scores" / "durable.yaml"
SEED = 7
TIME_SCALE = "0.05"
WORKERS = 3
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


def _perform(home: Path, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    options = ["--simulate", "--seed", str(SEED), "--no-cache", "--json", "--time-scale", TIME_SCALE]
    return _hct_run(home, "perform", str(SCORE), *options, fault=fault)


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


@dataclass(frozen=True)
class Reference:
    doc: dict[str, Any]
    show: dict[str, Any]

    @property
    def results(self) -> int:
        """Journaled call results of the uninterrupted run: the range of K for HCT_FAULT."""
        return len(self.show["calls"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    home = tmp_path_factory.mktemp("reference")
    first = _perform(home)
    doc = _document(first)
    show = json.loads(_hct_run(home, "show", _run_id(first), "--json").stdout)
    # The comparison below is only meaningful if the run is reproducible at all.
    again = _document(_perform(tmp_path_factory.mktemp("reference-again")))
    assert _comparable(again) == _comparable(doc)
    return Reference(doc, show)


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


def _crash_and_resume(root: Path, fault: str) -> Outcome:
    home = root / fault.replace(":", "-")
    home.mkdir()
    crashed = _perform(home, fault)
    run_id = _run_id(crashed)
    status = json.loads(_hct_run(home, "show", run_id, "--json").stdout or "{}").get("status", "?")
    resumed = _hct_run(home, "perform", "--resume", run_id, "--json")
    show = json.loads(_hct_run(home, "show", run_id, "--json").stdout or "{}")
    return Outcome(fault, crashed, status, resumed, show)


@pytest.mark.timeout(300)
def test_kill_anywhere_then_resume_gives_the_same_run(reference: Reference, tmp_path: Path) -> None:
    points = _kill_points(reference.results)
    assert len(points) >= 20
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(lambda fault: _crash_and_resume(tmp_path, fault), points))

    expected = _comparable(reference.doc)
    failures: list[str] = []
    lost_mid = 0
    for o in outcomes:
        try:
            assert o.crashed.returncode in KILLED, f"exit {o.crashed.returncode}, stderr {o.crashed.stderr!r}"
            assert '"status": "completed"' not in o.crashed.stdout
            assert o.crashed_status == "crashed"
            doc = _document(o.resumed)
            assert doc["status"] == "completed"
            assert doc["segment"] == 2  # one resume completes the run
            assert doc["paid_calls"] == reference.doc["paid_calls"]
            assert doc["lost_calls"] >= 0
            assert doc["cost_usd"] == pytest.approx(reference.doc["cost_usd"], rel=1e-9, abs=1e-12)
            assert doc["state"] == reference.doc["state"]
            assert {n: a["output"] for n, a in doc["agents"].items()} == {
                n: a["output"] for n, a in reference.doc["agents"].items()
            }
            assert _comparable(doc) == expected
            # The journal agrees: each call paid once, the same calls as the uninterrupted run.
            assert o.show["status"] == "completed"
            assert o.show["paid_calls"] == reference.doc["paid_calls"]
            assert o.show["lost_calls"] == doc["lost_calls"]
            assert _paid_keys(o.show) == _paid_keys(reference.show)
            if o.fault.startswith("mid:"):
                lost_mid += doc["lost_calls"] > 0
        except (AssertionError, ValueError, KeyError) as exc:
            failures.append(f"HCT_FAULT={o.fault}: {exc}")
    assert not failures, f"{len(failures)} of {len(outcomes)} kill points failed:\n" + "\n".join(failures)
    # A transaction lost mid-commit held a paid result: the journal counts it as lost.
    assert lost_mid > 0


@pytest.mark.timeout(120)
def test_repeated_crashes_still_converge(reference: Reference, tmp_path: Path) -> None:
    """Crash every segment after two more results; each resume makes progress until done."""
    crashed = _perform(tmp_path, "after:2")
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
