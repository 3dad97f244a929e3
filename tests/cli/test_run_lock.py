"""One process performs a run at a time: a resume of a live run, or the loser of two resumes
racing, is refused naming the live process; a killed run's claim passes to the next resume.
Real processes throughout: the claim is the kernel's, and it must outlive nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(180)

SCORE = Path(__file__).resolve().parents[1] / "resources" / "scores" / "durable.yaml"
HCT = [sys.executable, "-m", "hct_cli"]
# Slow enough that a run is still going when the other processes of a test get to it.
SLOW = ["--simulate", "--seed", "7", "--no-cache", "--time-scale", "30"]


def _env(home: Path, fault: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HCT_FAULT"}
    env.update(HCT_HOME=str(home), NO_COLOR="1")
    if fault is not None:
        env["HCT_FAULT"] = fault
    return env


def _hct(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HCT, *args], env=_env(home), capture_output=True, text=True, timeout=120, check=False)


def _start(home: Path, *args: str, fault: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*HCT, *args], env=_env(home, fault), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _show(home: Path, run_id: str) -> dict[str, Any]:
    proc = _hct(home, "show", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _paid(show: dict[str, Any]) -> list[tuple[str, int, str]]:
    return sorted((c["agent"], c["version"], c.get("purpose", "call")) for c in show["calls"] if not c["cached"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``hct show`` of the same run uninterrupted (fast: the pace changes no call or cost)."""
    home = tmp_path_factory.mktemp("reference")
    fast = [a if a != "30" else "0.05" for a in SLOW]
    proc = _hct(home, "perform", str(SCORE), *fast, "--json")
    assert proc.returncode == 0, proc.stderr
    return _show(home, json.loads(proc.stdout)["run_id"])


def _refused_by(proc: subprocess.CompletedProcess[str] | tuple[int, str], pid: int) -> None:
    code, stdout = (proc.returncode, proc.stdout) if isinstance(proc, subprocess.CompletedProcess) else proc
    assert code == 1, stdout
    error = json.loads(stdout)["error"]
    assert error["type"] == "RunBusyError"
    assert f"process {pid}" in error["message"]
    assert f"kill {pid}" in error["hint"]


def test_a_live_run_refuses_a_second_performer_but_takes_decisions(tmp_path: Path, reference: dict[str, Any]) -> None:
    live = _start(tmp_path, "perform", str(SCORE), *SLOW, "--json")
    try:
        assert live.stderr is not None
        first = live.stderr.readline()  # written once the run is claimed and journaled
        run_id = first.split()[1].rstrip(":")
        _refused_by(_hct(tmp_path, "perform", "--resume", run_id, "--json"), live.pid)
        _refused_by(_hct(tmp_path, "perform", "--resume", run_id[:6], "--json"), live.pid)  # by a prefix too

        approved = _hct(tmp_path, "approve", run_id, "outline", "--json")  # not a performer: never refused
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["verdict"] == "approve"
        (row,) = json.loads(_hct(tmp_path, "runs", "--json").stdout)
        assert row["status"] == "running"
    finally:
        live.send_signal(signal.SIGKILL)
        live.communicate(timeout=30)

    # The kernel dropped the dead process's claim: the next resume takes the run over and ends it.
    resumed = _hct(tmp_path, "perform", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    show = _show(tmp_path, run_id)
    assert show["status"] == "completed"
    assert _paid(show) == _paid(reference)
    assert show["paid_calls"] == reference["paid_calls"]
    assert show["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in show["calls"]), abs=1e-12)


def test_two_resumes_racing_for_a_killed_run_let_exactly_one_perform(tmp_path: Path, reference: dict[str, Any]) -> None:
    crashed = _start(tmp_path, "perform", str(SCORE), *SLOW, "--json", fault="after:3")
    _, stderr = crashed.communicate(timeout=120)
    assert crashed.returncode in (-9, 137), stderr
    run_id = stderr.split()[1].rstrip(":")
    assert _show(tmp_path, run_id)["status"] == "crashed"

    racers = [_start(tmp_path, "perform", "--resume", run_id, "--json") for _ in range(2)]
    outcomes = [(racer.pid, *racer.communicate(timeout=120), racer.returncode) for racer in racers]
    winners = [o for o in outcomes if o[3] == 0]
    losers = [o for o in outcomes if o[3] != 0]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    winner_pid, loser_stdout = winners[0][0], losers[0][1]
    _refused_by((losers[0][3], loser_stdout), winner_pid)

    show = _show(tmp_path, run_id)
    assert show["status"] == "completed"
    assert show["segments"] == 2  # the loser journaled no segment
    assert _paid(show) == _paid(reference)
    assert show["paid_calls"] == reference["paid_calls"]
    assert show["cost_usd"] == pytest.approx(sum(c["cost_usd"] for c in show["calls"]), abs=1e-12)
    assert show["cost_usd"] == pytest.approx(reference["cost_usd"], rel=1e-9)
