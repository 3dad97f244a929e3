"""``hct init``: the starter score's modeline points at a schema an editor can read offline."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.MULTILINE)


def _schema_of(score: Path) -> Path:
    match = MODELINE.search(score.read_text("utf-8"))
    assert match, score.read_text("utf-8")[:200]
    reference = Path(match.group(1))
    return reference if reference.is_absolute() else score.parent / reference


def _packaged_schema() -> object:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    return json.loads(result.stdout)


def test_outside_a_checkout_the_modeline_names_the_installed_schema(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "demo", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    schema = _schema_of(Path(json.loads(result.stdout)["path"]))
    assert schema.is_absolute() and schema.is_file()
    assert json.loads(schema.read_text("utf-8")) == _packaged_schema()


def test_inside_a_checkout_the_modeline_is_relative_to_its_schemas(tmp_path: Path, repo: Path) -> None:
    (tmp_path / "schemas").mkdir()
    shutil.copy(repo / "schemas" / "score.schema.json", tmp_path / "schemas" / "score.schema.json")
    (tmp_path / "scores").mkdir()
    result = runner.invoke(app, ["init", "demo", "--dir", str(tmp_path / "scores"), "--json"])
    assert result.exit_code == 0, result.output
    score = Path(json.loads(result.stdout)["path"])
    assert MODELINE.search(score.read_text("utf-8"))[1] == "../schemas/score.schema.json"  # type: ignore[index]
    assert json.loads(_schema_of(score).read_text("utf-8")) == _packaged_schema()


def test_an_emitted_synthetic_score_names_a_schema_that_exists(tmp_path: Path) -> None:
    from hct_cli.bench.synthetic import emit_yaml, random_dag

    path = tmp_path / "random.yaml"
    emit_yaml(random_dag(3, seed=0, latency_ms=(0, 0)), path)
    assert json.loads(_schema_of(path).read_text("utf-8")) == _packaged_schema()


UNCOMMENT = re.compile(r"^(\s*)# ((?:tools|max_steps):.*|  git:|    (?:command|effects|concurrency):.*)$")


def test_the_commented_tools_example_lints_clean_once_uncommented(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "demo", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    score = Path(json.loads(result.stdout)["path"])
    starter = score.read_text("utf-8")
    assert "\ntools:" not in starter  # commented out: the starter runs without an MCP server
    lines = [UNCOMMENT.sub(r"\1\2", line) for line in starter.splitlines()]
    uncommented = [line for line, before in zip(lines, starter.splitlines(), strict=True) if line != before]
    assert len(uncommented) == 7, uncommented
    score.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checked = runner.invoke(app, ["lint", str(score), "--json"])
    assert checked.exit_code == 0, checked.stdout
    report = json.loads(checked.stdout)
    assert report["summary"] == {"files": 1, "errors": 0, "warnings": 0, "notes": 0}
    assert report["files"][0]["score"] == "demo"
    from hct_cli.program.lint import load_score

    loaded = load_score(score)
    assert loaded.agents["historian"].tools == ("git.git_log", "git.git_show")
    assert loaded.tools["git"].effects == "read"
