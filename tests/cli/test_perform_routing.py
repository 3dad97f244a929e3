"""``hct perform`` routing figures: the seed's mixed workload, savings and the budget cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.models import model_info

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def perform(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["perform", *args, "--simulate", "--time-scale", "0.01", "--json"])
    data: dict[str, object] = json.loads(result.stdout)
    data["exit_code"] = result.exit_code
    return data


def cost(model: str, prompt: int, output: int) -> float:
    price = model_info(model)
    assert price is not None
    return price.cost(prompt, output)


def test_mixed_workload_reaches_the_savings_its_routing_implies(repo: Path) -> None:
    data = perform(str(repo / "scores/mixed-workload.yaml"))
    assert data["status"] == "completed"
    frontier = 10 * cost("claude-sonnet-4-5", 2000, 1100)
    actual = 4 * cost("gpt-4o-mini", 2000, 1100) + 3 * cost("claude-sonnet-4-5", 2000, 1100)
    assert data["frontier_cost_usd"] == pytest.approx(frontier) == pytest.approx(0.225)
    assert data["cost_usd"] == pytest.approx(actual)
    assert data["savings"] == pytest.approx(1 - actual / frontier, abs=1e-6)
    assert data["savings"] == pytest.approx(0.683, abs=0.001)
    agents = data["agents"]
    assert isinstance(agents, dict)
    for record in agents.values():
        assert record["prompt_tokens"] == 2000 and record["completion_tokens"] == 1100
        assert record["worst_case_usd"] >= record["cost_usd"]
        assert record["frontier_cost_usd"] == pytest.approx(cost("claude-sonnet-4-5", 2000, 1100))
    assert sum(r["frontier_cost_usd"] for r in agents.values()) == pytest.approx(data["frontier_cost_usd"])


def test_half_the_budget_keeps_spend_under_the_cap_plus_one_call(repo: Path) -> None:
    score = str(repo / "scores/mixed-workload.yaml")
    full = perform(score)
    budget = float(full["cost_usd"]) / 2  # type: ignore[arg-type]
    capped = perform(score, "--budget", f"{budget:.6f}")
    agents = capped["agents"]
    assert isinstance(agents, dict)
    worst = max(record["worst_case_usd"] for record in agents.values())
    assert float(capped["cost_usd"]) <= budget + worst  # type: ignore[arg-type]
    assert capped["status"] in ("completed", "budget_exhausted")
    assert capped["exit_code"] == (0 if capped["status"] == "completed" else 1)
    tiers = [record["tier"] for record in agents.values() if record["status"] == "done"]
    assert tiers.count("frontier") < 3, "nothing was stepped down"


def test_local_and_simulate_exclude_each_other(repo: Path) -> None:
    result = runner.invoke(app, ["perform", str(repo / "scores/code-review.yaml"), "--simulate", "--local"])
    assert result.exit_code == 2 and "--local" in result.output


def test_a_tier_with_its_own_server_is_checked_at_that_server(tmp_path: Path) -> None:
    score = tmp_path / "s.yaml"
    score.write_text(
        "hct: 1\nname: s\nrouting:\n  tiers:\n    mid: {model: openai/house-model, api_base: 'http://127.0.0.1:9/v1'}\n"
        "agents:\n  a: {prompt: hi, tempo: allegro, dynamics: mf}\n"
    )
    result = runner.invoke(app, ["perform", str(score)])
    assert result.exit_code == 1
    assert "no server answers at http://127.0.0.1:9/v1" in result.output
