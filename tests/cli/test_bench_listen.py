"""Listening from the command line: ``hct perform --json`` reports the prompt cache's tokens and
what it saved, per agent and for the run; ``hct bench --compare no-listen`` runs the score with
and without the listening policy on the same seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()

REVIEWERS = ("security", "performance", "correctness", "concurrency", "api", "tests")


def score(repo: Path) -> str:
    return str(repo / "scores" / "shared-context.yaml")


def invoke_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_perform_json_reports_cache_tokens_and_savings_per_agent_and_for_the_run(repo: Path) -> None:
    data = invoke_json("perform", score(repo), "--simulate", "--time-scale", "0.05")
    assert data["status"] == "completed"
    agents = data["agents"]
    for figures in agents.values():
        assert {"cached_tokens", "cache_write_tokens", "cache_saving_usd"} <= set(figures)

    # One reviewer (the leader) writes the diff into the cache; the other five read it.
    writers = [name for name in REVIEWERS if agents[name]["cache_write_tokens"] > 0]
    assert len(writers) == 1
    assert all(agents[name]["cached_tokens"] > 0 for name in REVIEWERS if name not in writers)
    assert all(agents[name]["cache_saving_usd"] > 0 for name in REVIEWERS if name not in writers)
    assert agents["rank"]["cached_tokens"] == agents["rank"]["cache_write_tokens"] == 0  # a short prompt

    # The run's figures add up the agents'.
    assert data["cached_tokens"] == sum(a["cached_tokens"] for a in agents.values())
    assert data["cache_write_tokens"] == sum(a["cache_write_tokens"] for a in agents.values())
    assert data["cache_saving_usd"] == pytest.approx(sum(a["cache_saving_usd"] for a in agents.values()), abs=1e-6)
    assert data["cache_saving_usd"] > 0
    assert 0 < data["input_cost_usd"] < data["cost_usd"]


def test_perform_makes_no_warm_up_when_the_simulated_provider_reports_first_tokens(repo: Path) -> None:
    """With the L5 result cache in front of it (the default) as without it (--no-cache)."""
    for extra in ((), ("--no-cache",)):
        data = invoke_json("perform", score(repo), "--simulate", "--time-scale", "0.05", *extra)
        assert data["status"] == "completed"
        assert all(data["agents"][name]["calls"] == 1 for name in REVIEWERS), extra


def test_bench_compare_no_listen_runs_both_on_the_same_seed(repo: Path) -> None:
    data = invoke_json(
        "bench", score(repo), "--compare", "no-listen", "--trials", "1", "--time-scale", "0.05", "--seed", "3"
    )
    policies = data["policies"]
    assert list(policies) == ["no-listen", "listen"]  # the baseline first
    assert policies["no-listen"]["cached_tokens"] == 0
    assert policies["listen"]["cached_tokens"] > 0
    assert policies["listen"]["input_cost_usd"] < policies["no-listen"]["input_cost_usd"]
    ratio = data["input_cost_ratios"]["listen/no-listen"]
    assert 0 < ratio <= 0.35
    assert ratio == pytest.approx(
        policies["listen"]["input_cost_usd"] / policies["no-listen"]["input_cost_usd"], abs=1e-4
    )
    assert "listen/no-listen" in data["ratios"]


@pytest.mark.parametrize("compare", ["no-listen,batch", "batch,no-listen", "no-listen,replay"])
def test_no_listen_is_compared_on_its_own(repo: Path, compare: str) -> None:
    result = runner.invoke(app, ["bench", score(repo), "--compare", compare, "--trials", "1", "--json"])
    assert result.exit_code == 2, result.output
    assert "no-listen on its own" in result.output
    assert "hint" in result.output and "--compare no-listen" in result.output
