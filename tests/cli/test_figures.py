"""The figures a run reports (docs/figures.md), from real runs: a cached re-run, a resume after
kill -9, and a speculation whose gate fails. Each run's ``--json`` document and its plain summary
(the caption of ``summary_table``) must agree with the definitions and with each other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.cli.plain import summary_table

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
FAST = ["--simulate", "--time-scale", "0.05"]
RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "scores"
#: Timer resolution and rounding to microseconds: makespan may trail the critical path by this.
NOISE_S = 1e-3


def perform(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["perform", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def show(run_id: str) -> dict[str, Any]:
    result = runner.invoke(app, ["show", run_id, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def caption(data: dict[str, Any]) -> str:
    """The summary's figures as the plain view prints them, on one line each."""
    return str(summary_table(data).caption)


def hct(home: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HCT_FAULT"}
    env.update(HCT_HOME=str(home), NO_COLOR="1")
    if fault is not None:
        env["HCT_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "hct_cli", *args], env=env, cwd=home, capture_output=True, text=True, timeout=60
    )


def run_id_of(proc: subprocess.CompletedProcess[str]) -> str:
    first = proc.stderr.splitlines()[0]
    assert first.startswith("run "), proc.stderr
    return first.split()[1].rstrip(":")


def test_a_cached_rerun_says_every_call_came_from_the_cache(repo: Path) -> None:
    score = str(repo / "scores" / "code-review.yaml")
    first = perform(score, *FAST)
    assert first["cached_calls"] == 0 and first["paid_calls"] > 0
    assert 0 < first["cost_usd"] < first["frontier_cost_usd"]
    assert f"(saving {first['savings']:.1%})" in caption(first)

    again = perform(score, *FAST)
    calls = again["cached_calls"]
    assert calls == first["paid_calls"] and again["paid_calls"] == 0
    # Nothing was paid, so there is nothing to compare with the frontier: no "saving 100 %".
    assert (again["cost_usd"], again["frontier_cost_usd"], again["savings"]) == (0, 0, 0)
    # No call was waited for: a cache hit takes no time of its own.
    assert again["critical_path_s"] == 0
    assert again["makespan_s"] >= again["critical_path_s"]
    text = caption(again)
    assert f"all {calls} calls served from the cache" in text
    assert "saving" not in text and "critical path 0.000" not in text
    assert caption(show(again["run_id"])) == text  # `hct show` reads the same


def test_a_resumed_segment_times_only_the_calls_it_waited_for(tmp_path: Path) -> None:
    score = str(RESOURCES / "durable.yaml")
    crashed = hct(tmp_path, "perform", score, *FAST, "--no-cache", "--json", fault="mid:6")
    assert crashed.returncode in (-9, 137), crashed.stderr
    run_id = run_id_of(crashed)
    resumed = hct(tmp_path, "perform", "--resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "completed" and doc["segment"] == 2
    # Both figures are of the resumed segment: the answers from the journal took none of its time.
    assert doc["makespan_s"] >= doc["critical_path_s"] - NOISE_S
    # The kill lost the transaction of the 6th result, and whatever else was in flight then.
    lost = doc["lost_calls"]
    assert lost >= 1 and doc["squashed_calls"] == 0
    assert f"{lost} lost to a crash or an interruption" in caption(doc)


def test_a_resume_with_every_answer_journaled_waited_for_no_call(tmp_path: Path) -> None:
    score = tmp_path / "pair.yaml"
    score.write_text("hct: 1\nname: pair\nagents:\n  a: {prompt: hi}\n  b: {prompt: 'there {{ cues.a }}', cues: [a]}\n")
    crashed = hct(tmp_path, "perform", str(score), *FAST, "--no-cache", "--json", fault="after:2")
    assert crashed.returncode in (-9, 137), crashed.stderr
    resumed = hct(tmp_path, "perform", "--resume", run_id_of(crashed), "--json")
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "completed"
    assert doc["critical_path_s"] == 0
    assert (doc["paid_calls"], doc["cached_calls"], doc["lost_calls"]) == (2, 0, 0)
    assert doc["cost_usd"] > 0 and doc["frontier_cost_usd"] > doc["cost_usd"]  # the run's, paid in segment 1
    text = caption(doc)
    assert "every answer came from the journal" in text and "critical path 0.000" not in text


def test_a_squashed_speculative_call_is_counted_squashed_not_lost() -> None:
    doc = perform(str(RESOURCES / "squash.yaml"), *FAST, "--no-cache", "--seed", "2")
    assert doc["status"] == "completed"
    assert doc["squashes"] == 1  # the review fired on the held draft@1, whose gate failed
    assert doc["agents"]["review"]["version"] == 2
    assert (doc["squashed_calls"], doc["lost_calls"]) == (1, 0)
    assert doc["paid_calls"] == 5  # draft twice, its judge twice, the review once
    # The review did not wait for the draft's judge: off the critical path, as in the run.
    assert doc["makespan_s"] >= doc["critical_path_s"] - NOISE_S
    text = caption(doc)
    assert "calls: 5 paid, 0 cached, 1 squashed, 0 lost to a crash or an interruption" in text
    shown = show(doc["run_id"])
    assert (shown["squashed_calls"], shown["lost_calls"], shown["paid_calls"]) == (1, 0, 5)
