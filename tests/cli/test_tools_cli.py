"""``hct tools SCORE``: the score's servers started for real (mcp-server-git over stdio on a
repository the test makes), listed, stopped, their lists saved for ``hct lint``; stdio servers
need --allow-exec or the allow list (--trust); a server that cannot start is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app

pytest.importorskip("hct_cli.tools.toolbox")  # the run's toolbox (the MCP client's helper lands it)
pytestmark = pytest.mark.timeout(120)
runner = CliRunner()

SCORE = """hct: 1
name: git-tools
inputs:
  repo: {{required: true}}
tools:
  git:
    command: [{python}, -m, mcp_server_git, --repository, "{{{{ inputs.repo }}}}"]
    effects: read
agents:
  reader:
    prompt: Read the log.
    tools: [git.git_log, git.{tool}]
"""


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "first"], check=True, env=env)
    return repo


def _score(tmp_path: Path, tool: str = "git_show") -> Path:
    path = tmp_path / "score.yaml"
    path.write_text(SCORE.format(python=json.dumps(sys.executable), tool=tool), encoding="utf-8")
    return path


def _home() -> Path:
    return Path(os.environ["HCT_HOME"])


def test_json_lists_every_tool_with_schema_and_effects_and_lint_then_knows_them(tmp_path: Path, git_repo: Path) -> None:
    score = _score(tmp_path, tool="git_nope")
    before = runner.invoke(app, ["lint", str(score)])
    assert before.exit_code == 0, before.output  # no list known: the name cannot be judged yet
    result = runner.invoke(app, ["tools", str(score), "--json", "--allow-exec", "-i", f"repo={git_repo}"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["score"] == str(score)
    assert list(document["servers"]) == ["git"]
    assert document["servers"]["git"]["transport"] == "stdio"
    assert document["servers"]["git"]["on"] == "conductor"
    tools = {tool["name"]: tool for tool in document["servers"]["git"]["tools"]}
    assert {"git_log", "git_show", "git_status"} <= set(tools)
    assert tools["git_log"]["tool"] == "git.git_log"
    assert tools["git_log"]["effects"] == "read"
    assert "repo_path" in tools["git_log"]["input_schema"]["properties"]
    assert tools["git_log"]["description"]
    after = runner.invoke(app, ["lint", str(score), "--json"])
    assert after.exit_code == 1, after.output
    findings = json.loads(after.stdout)["files"][0]["findings"]
    assert [(f["code"], f["line"], f["col"]) for f in findings] == [("HCT292", 12, 26)]
    assert "git_nope" in findings[0]["message"]
    fixed = _score(tmp_path, tool="git_show")
    assert runner.invoke(app, ["lint", str(fixed)]).exit_code == 0


def test_a_stdio_server_needs_allow_exec_or_trust(tmp_path: Path, git_repo: Path) -> None:
    score = _score(tmp_path)
    refused = runner.invoke(app, ["tools", str(score), "--json", "-i", f"repo={git_repo}"])
    assert refused.exit_code == 1
    error = json.loads(refused.stdout)["error"]
    assert "'git'" in error["message"] and error["hint"]
    assert not (_home() / "tools.allow").exists()
    trusted = runner.invoke(app, ["tools", str(score), "--trust", "-i", f"repo={git_repo}"])
    assert trusted.exit_code == 0, trusted.output
    assert "trusted: git" in trusted.stderr
    assert "git.git_log  [read]" in trusted.stdout  # plain text off a terminal
    allow = (_home() / "tools.allow").read_text(encoding="utf-8")
    assert "server git" in allow and str(score) in allow
    again = runner.invoke(app, ["tools", str(score), "--json", "-i", f"repo={git_repo}"])
    assert again.exit_code == 0, again.output  # trusted now: no --allow-exec needed
    edited = score.read_text(encoding="utf-8").replace("--repository,", "--verbose, --repository,")
    score.write_text(edited, encoding="utf-8")
    changed = runner.invoke(app, ["tools", str(score), "--json", "-i", f"repo={git_repo}"])
    assert changed.exit_code == 1  # an edited command is a new entry, not trusted


def test_a_server_that_fails_to_start_is_a_clear_error(tmp_path: Path) -> None:
    score = tmp_path / "broken.yaml"
    score.write_text(
        "hct: 1\nname: broken\ntools:\n  dead:\n"
        f"    command: [{json.dumps(sys.executable)}, -c, 'import sys; print(\"no such server\", file=sys.stderr); sys.exit(3)']\n"
        "    effects: read\nagents:\n  a:\n    prompt: Hi.\n    tools: [dead.*]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["tools", str(score), "--allow-exec"])
    assert result.exit_code == 1
    assert "dead" in result.stderr
    assert "Traceback" not in result.output
    assert not (_home() / "tools").exists()  # nothing listed, nothing saved


def test_a_score_without_servers_is_a_usage_error(tmp_path: Path) -> None:
    score = tmp_path / "plain.yaml"
    score.write_text("hct: 1\nname: plain\nagents:\n  a:\n    prompt: Hi.\n", encoding="utf-8")
    result = runner.invoke(app, ["tools", str(score), "--json"])
    assert result.exit_code == 2
    assert "declares no tool servers" in json.loads(result.stdout)["error"]["message"]
