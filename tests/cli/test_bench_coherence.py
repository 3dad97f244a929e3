"""``hct bench --compare`` over coherence policies: same seed, one entry per policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def bench(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["bench", *args, "--trials", "1", "--time-scale", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_coherence_off_compares_the_scores_own_policy_with_off(repo: Path) -> None:
    data = bench(str(repo / "scores/collab-writing.yaml"), "--compare", "coherence-off")
    policies = data["policies"]
    assert isinstance(policies, dict) and list(policies) == ["replay", "off"]
    for figures in policies.values():
        assert {"stale_reads", "replays", "makespan_s", "cost_usd"} <= set(figures)
    assert policies["replay"]["stale_reads"] == 0 and policies["replay"]["replays"] > 0
    assert policies["off"]["stale_reads"] > 0 and policies["off"]["replays"] == 0
    assert "off/replay" in data["ratios"]  # type: ignore[operator]


def test_any_set_of_coherence_policies(repo: Path) -> None:
    data = bench(str(repo / "scores/collab-writing.yaml"), "--compare", "replay,hold,off")
    policies = data["policies"]
    assert isinstance(policies, dict) and set(policies) == {"replay", "hold", "off"}
    assert policies["hold"]["stale_reads"] == 0


def test_dispatch_and_coherence_policies_do_not_mix(repo: Path) -> None:
    result = runner.invoke(app, ["bench", str(repo / "scores/collab-writing.yaml"), "--compare", "batch,off"])
    assert result.exit_code == 2 and "not both" in result.output
