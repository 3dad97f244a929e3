"""Inputs without a value: hct lint warns, hct perform asks for them on a terminal and refuses
to start without them anywhere else."""

from __future__ import annotations

import io
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.errors import InputError
from hct_cli.program.inputs import ask_on_terminal, resolve_inputs
from hct_cli.program.lint import lint_text, load_score_text
from hct_cli.score.model import InputSpec

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()

SCORE = """\
hct: 1
name: asks
inputs:
  topic:
    type: text
    description: what the essay is about
  words:
    type: integer
    required: true
  tone:
    default: dry
agents:
  essay:
    prompt: "Write {{ inputs.words }} words about {{ inputs.topic }}, {{ inputs.tone }}."
    simulate: {latency_ms: [1, 1]}
"""


def test_lint_warns_at_an_input_with_neither_a_default_nor_required() -> None:
    result = lint_text(SCORE)
    [finding] = [f for f in result.findings if f.code == "HCT262"]
    assert finding.severity.value == "warning" and finding.line == 4
    assert "topic" in finding.message
    assert "default:" in finding.hint and "default_file:" in finding.hint and "required: true" in finding.hint


def test_a_required_input_is_not_warned_about() -> None:
    assert not [f for f in lint_text(SCORE.replace("    type: text\n", "    required: true\n")).findings]


def test_missing_inputs_are_named_together_with_the_flag_to_pass() -> None:
    score = load_score_text(SCORE, "<asks>")
    with pytest.raises(InputError) as caught:
        resolve_inputs(score, {})
    assert "'topic'" in str(caught.value) and "'words'" in str(caught.value)
    assert "--input topic=" in (caught.value.hint or "") and "--input words=" in (caught.value.hint or "")
    assert resolve_inputs(score, {"topic": "bees", "words": "12"}) == {"topic": "bees", "words": 12, "tone": "dry"}


def test_missing_inputs_are_asked_for_when_someone_can_answer() -> None:
    score = load_score_text(SCORE, "<asks>")
    asked: list[str] = []

    def ask(spec: InputSpec) -> str:
        asked.append(spec.name)
        return {"topic": "bees", "words": "40"}[spec.name]

    assert resolve_inputs(score, {"tone": "warm"}, ask=ask) == {"topic": "bees", "words": 40, "tone": "warm"}
    assert asked == ["topic", "words"]


def test_the_question_goes_to_stderr_and_the_answer_comes_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO("bees and wasps\n"))
    monkeypatch.setattr(sys, "stderr", err)
    spec = InputSpec(name="topic", description="what the essay is about")
    assert ask_on_terminal(spec) == "bees and wasps"
    assert "topic" in err.getvalue() and "what the essay is about" in err.getvalue()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(InputError, match="topic"):
        ask_on_terminal(spec)


def test_perform_off_a_terminal_fails_before_any_run(tmp_path: Path) -> None:
    path = tmp_path / "asks.yaml"
    path.write_text(SCORE, "utf-8")
    result = runner.invoke(app, ["perform", str(path), "--simulate", "--no-tui"])
    assert result.exit_code == 1, result.output
    assert "--input topic=" in result.stderr and "Traceback" not in result.output
    assert json.loads(runner.invoke(app, ["runs", "--json"]).stdout) == []


def _read_until(fd: int, needle: bytes, deadline: float) -> bytes:
    seen = b""
    while needle not in seen:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the other end closed
                break
            seen += chunk
    return seen


def test_perform_on_a_terminal_asks_and_runs(tmp_path: Path) -> None:
    pytest.importorskip("pty")
    import pty

    path = tmp_path / "asks.yaml"
    path.write_text(SCORE, "utf-8")
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "hct_cli", "perform", str(path), "--simulate", "--no-tui", "--json"],
        stdin=follower,
        stderr=follower,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    os.close(follower)
    try:
        deadline = time.monotonic() + 30
        _read_until(leader, b"topic", deadline)
        os.write(leader, b"bees\n")
        _read_until(leader, b"words", deadline)
        os.write(leader, b"12\n")
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    assert process.returncode == 0
    assert json.loads(out)["status"] == "completed"


def test_bench_says_how_to_give_a_value_it_cannot_take(resources: Path) -> None:
    score = resources / "scores" / "bad" / "input_without_default.yaml"
    result = runner.invoke(app, ["bench", str(score)])
    assert result.exit_code == 1, result.output
    assert "'topic'" in result.stderr and "default:" in result.stderr and "--input topic=" not in result.stderr
