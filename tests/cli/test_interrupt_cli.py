"""Ctrl-C and SIGTERM end ``hct perform`` with the results so far, as one JSON document."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
HCT = [sys.executable, "-c", "from hct_cli.cli import main; main()"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_prints_its_results_and_exits_130(repo: Path, sig: signal.Signals) -> None:
    process = subprocess.Popen(
        [*HCT, "perform", str(repo / "scores/code-review.yaml"), "--simulate", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)  # imports, then the parse agent and a few reviewers commit
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    data = json.loads(out)
    assert data["status"] == "interrupted"
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_run_whose_check_backtracks_for_ever(resources: Path, sig: signal.Signals) -> None:
    """Each pass of the vamp spends its check's whole regex time limit; the signal still lands
    (a regex without a limit would hold it for minutes) and the run reports itself interrupted."""
    process = subprocess.Popen(
        [*HCT, "perform", str(resources / "scores/backtracking.yaml"), "--simulate", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        started = process.stderr.readline()
        assert "journaled" in started, started
        time.sleep(1.5)  # the first passes are in their checks
        process.send_signal(sig)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    data = json.loads(out)
    assert data["status"] == "interrupted"
    assert data["agents"]["shout"]["status"] != "done"
    assert "Traceback" not in err


def test_an_unwritable_gantt_path_is_refused_before_the_benchmark(tmp_path: Path, repo: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", str(repo / "scores/code-review.yaml"), "--trials", "1", "--gantt", str(tmp_path / "no/g.svg")]
    )
    assert result.exit_code == 2 and "no directory" in result.output


@pytest.mark.parametrize("flag", ["--budget", "--time-scale"])
def test_not_a_number_is_refused(repo: Path, flag: str) -> None:
    result = CliRunner().invoke(app, ["perform", str(repo / "scores/code-review.yaml"), "--simulate", flag, "nan"])
    assert result.exit_code == 2
