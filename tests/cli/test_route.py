"""``hct route``: the table and each agent's tier, model and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def test_route_json_names_every_agent_with_its_reason(repo: Path) -> None:
    result = runner.invoke(app, ["route", str(repo / "scores/mixed-workload.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["table"]["presto"]["ff"] == "frontier" and data["table"]["andante"]["pp"] == "local"
    tiers = [agent["tier"] for agent in data["agents"].values()]
    assert (tiers.count("local"), tiers.count("mid"), tiers.count("frontier")) == (3, 4, 3)
    assert data["agents"]["root_cause"]["model"] == "claude-sonnet-4-5"
    assert data["agents"]["root_cause"]["reason"] == "default table presto x ff"


def test_route_text_marks_score_overrides(tmp_path: Path) -> None:
    score = tmp_path / "s.yaml"
    score.write_text(
        "hct: 1\nname: s\nrouting:\n  table: {presto: {ff: mid}}\n"
        "agents:\n  a: {prompt: hi, tempo: presto, dynamics: ff}\n  b: {prompt: hi, model: gpt-4o}\n"
    )
    result = runner.invoke(app, ["route", str(score)])
    assert result.exit_code == 0, result.output
    assert "mid*" in result.output
    assert "routing.table presto x ff" in result.output
    assert "pinned by model:" in result.output


def test_route_of_a_broken_score_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    score = tmp_path / "bad.yaml"
    score.write_text("hct: 1\nname: b\nagents:\n  a: {prompt: hi, cues: [nobody]}\n")
    result = runner.invoke(app, ["route", str(score)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
