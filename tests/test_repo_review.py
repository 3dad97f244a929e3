"""scores/repo-review.yaml end to end, on a repository the test makes: a real ``hct perform
--simulate`` with the real git server (mcp-server-git) and the official filesystem server (npm),
the reviewers' reads checked against ``git`` itself, the fixer's one write made only after a
person approves (``hct approve``), and not at all when the person rejects."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hct_cli.store.home import DB_NAME
from tests.conftest import SCORES
from tests.tools.servers import filesystem_server_argv, git, git_repo

pytestmark = pytest.mark.timeout(180)

HCT = [sys.executable, "-m", "hct_cli"]
SCORE = SCORES / "repo-review.yaml"


def _waiting_run(repo: Path) -> tuple[subprocess.Popen[str], str]:
    """Start the review of ``repo`` without a terminal; return it and its id once it waits for the person."""
    process = subprocess.Popen(
        [*HCT, "perform", str(SCORE), "--input", f"repo={repo}", "--simulate", "--allow-exec", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    run_id = ""
    for line in process.stderr:
        found = re.search(r"^run ([0-9a-f]{12}):", line)
        if found:
            run_id = found.group(1)
        if "waits for a person" in line:
            return process, run_id
    process.kill()
    raise AssertionError("the run never asked for a person")


def _review(tmp_path: Path, verb: str) -> tuple[dict[str, Any], Path]:
    if filesystem_server_argv(tmp_path) is None:
        pytest.skip("node is not installed")
    repo = git_repo(tmp_path)
    process, run_id = _waiting_run(repo)
    try:
        assert not (repo / "REVIEW.md").exists(), "the fixer wrote before the person decided"
        decided = subprocess.run([*HCT, verb, run_id, "aggregate"], capture_output=True, text=True, timeout=60)
        assert decided.returncode == 0, decided.stderr
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return json.loads(out), repo


def test_the_team_reviews_a_real_repository_and_writes_once_approved(tmp_path: Path) -> None:
    document, repo = _review(tmp_path, "approve")
    assert document["status"] == "completed"
    agents = document["agents"]
    reader = agents["reader"]["tool_calls"]
    assert [(c["step"], c["tool"], c["ok"]) for c in reader] == [(0, "git.git_log", True), (1, "git.git_show", True)]
    assert all(
        c["effects"] == "read"
        for name in ("reader", "security", "correctness", "tests")
        for c in agents[name]["tool_calls"]
    )
    assert [(c["tool"], c["effects"], c["ok"]) for c in agents["fixer"]["tool_calls"]] == [
        ("fs.write_file", "write", True)
    ]
    assert (repo / "REVIEW.md").read_text(encoding="utf-8") == "Reviewed by hct."
    # What the tools answered (as the journal keeps it) is what git and the files say.
    with sqlite3.connect(Path(os.environ["HCT_HOME"]) / DB_NAME) as db:
        answers = {
            (station, json.loads(data)["tool"]): json.loads(data)["text"]
            for station, data in db.execute(
                "SELECT station, data FROM events WHERE run_id = ? AND kind = 'tool_result'", (document["run_id"],)
            )
        }
    head = git(repo, "rev-parse", "HEAD").strip()
    assert head in answers[("reader", "git.git_log")]
    assert git(repo, "show", "HEAD", "--format=%s", "--no-patch").strip() in answers[("reader", "git.git_show")]
    assert answers[("correctness", "fs.read_text_file")] == (repo / "app.py").read_text(encoding="utf-8")


def test_a_rejected_review_writes_nothing(tmp_path: Path) -> None:
    document, repo = _review(tmp_path, "reject")
    assert document["status"] == "caesura"
    assert "tool_calls" not in document["agents"]["fixer"]
    assert not (repo / "REVIEW.md").exists()
