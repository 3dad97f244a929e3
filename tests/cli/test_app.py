from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli import __version__
from hct_cli.cli import app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def test_help_and_version() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("lint", "schema", "init"):
        assert command in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"hct {__version__}"


def test_schema_prints_the_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "hct score"


def test_init_writes_a_lint_clean_score(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "demo", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    path = Path(json.loads(result.stdout)["path"])
    assert path.read_text().startswith("# yaml-language-server: $schema=")
    lint = runner.invoke(app, ["lint", str(path), "--strict"])
    assert lint.exit_code == 0, lint.output
    again = runner.invoke(app, ["init", "demo", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(app, ["init", "demo", "--dir", str(tmp_path), "--force"]).exit_code == 0


def test_init_refuses_bad_names(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "../escape", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert not (tmp_path.parent / "escape.yaml").exists()


def test_lint_json_and_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("hct: 1\nname: g\nagents:\n  a: {prompt: hi}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hct: 1\nname: b\nagents:\n  a: {prompt: hi, cues: [a]}\n")
    ok = runner.invoke(app, ["lint", str(good), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    failed = runner.invoke(app, ["lint", str(good), str(bad), "--format", "json"])
    assert failed.exit_code == 1
    data = json.loads(failed.stdout)
    assert [f["code"] for f in data["files"][1]["findings"]] == ["HCT201"]
    assert runner.invoke(app, ["lint"]).exit_code == 2
    assert runner.invoke(app, ["lint", str(good), "--format", "xml"]).exit_code == 2
    missing = runner.invoke(app, ["lint", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "HCT001" in missing.output


def test_example_scores_lint_clean(repo: Path) -> None:
    scores = sorted((repo / "scores").glob("*.yaml"))
    assert len(scores) >= 4
    result = runner.invoke(app, ["lint", *map(str, scores), "--json"])
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert data["summary"]["errors"] == 0 and data["summary"]["warnings"] == 0


def test_example_scores_carry_the_modeline_and_simulate_figures(repo: Path) -> None:
    from hct_cli.program.lint import load_score

    for path in sorted((repo / "scores").glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=../schemas/score.schema.json")
        score = load_score(path)
        for agent in score.agents.values():
            assert agent.simulate.latency_ms is not None, f"{path.name}: {agent.name} has no simulate latency"
            assert agent.kind in ("llm",), f"{path.name}: {agent.name} would need more than --simulate"


def test_light_paths_never_import_heavy_dependencies(repo: Path) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from hct_cli.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "assert r.invoke(app, ['lint', 'scores/code-review.yaml']).exit_code == 0\n"
        "heavy = sorted(m for m in ('litellm', 'textual', 'redis', 'openai') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_lint_code_is_documented(repo: Path) -> None:
    from hct_cli.score.findings import CODES

    text = (repo / "docs" / "lint-codes.md").read_text()
    assert [code for code in CODES if f"| {code} |" not in text] == []
