"""``hct perform`` on what cannot be JSON: answers carrying NaN, odd command-line values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hct_cli.cli import app

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
FAST = ["--simulate", "--time-scale", "0.01"]


def _strict(text: str) -> Any:
    """Parse as a strict JSON reader does: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_an_answer_carrying_nan_never_makes_invalid_json(tmp_path: Path, constant: str) -> None:
    score = tmp_path / "nan.yaml"
    score.write_text(
        "hct: 1\nname: nan\n"
        "state:\n  x: {initial: 0}\n  y: {initial: 0}\n"
        "agents:\n"
        "  a:\n"
        "    prompt: measure\n"
        "    writes: [x, y]\n"
        f'    simulate: {{output: \'{{"x": {constant}, "y": 1}}\'}}\n'
        "  b: {prompt: 'report {{ state.x }}', cues: [a], reads: [x]}\n"
    )
    performed = _invoke("perform", str(score), *FAST, "--json")
    data = _strict(performed.stdout)
    assert data["state"] == {"x": 0, "y": 0}  # nothing of the answer reached shared state
    failed = data["agents"]["a"]
    assert failed["status"] == "failed"
    assert constant.lstrip("-") in failed["error"] and "JSON" in failed["error"]
    shown = _invoke("show", data["run_id"], "--json")
    assert shown.exit_code == 0, shown.output
    _strict(shown.stdout)
    resumed = _invoke("perform", "--resume", data["run_id"], "--json")
    assert _strict(resumed.stdout)["segment"] == 2


INPUTS = (
    "hct: 1\nname: inputs\n"
    "inputs:\n  q: {type: text, default: x}\n  n: {type: number, default: 1}\n  d: {type: json, default: '{}'}\n"
    "agents:\n  a: {prompt: '{{ inputs.q }} {{ inputs.n }} {{ inputs.d }}'}\n"
)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("n=nan", "'n' must be number"),
        ("n=-inf", "'n' must be number"),
        ("n=1e400", "'n' must be number"),
        ("d=NaN", "'d' must be json"),
        ('d={"x": Infinity}', "'d' must be json"),
        ('d=["\\ud800"]', "'d' must be json"),
        ("q=x\udcffy", "not UTF-8"),  # what Python makes of the byte 0xff in argv
        ("q=@bad.txt", "cannot read --input q"),
    ],
)
def test_command_line_values_that_cannot_be_json_are_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")  # Latin-1, not UTF-8
    score = tmp_path / "inputs.yaml"
    score.write_text(INPUTS)
    result = _invoke("perform", str(score), *FAST, "--json", "--input", given)
    assert result.exit_code == 1, result.output
    error = _strict(result.stdout)["error"]
    assert error["type"] == "InputError" and says in error["message"], error


@pytest.mark.parametrize("budget", ["nan", "inf", "-1"])
def test_a_budget_must_be_a_finite_amount(tmp_path: Path, budget: str) -> None:
    score = tmp_path / "inputs.yaml"
    score.write_text(INPUTS)
    result = _invoke("perform", str(score), *FAST, "--json", "--budget", budget)
    assert result.exit_code == 2
    assert "--budget" in _strict(result.stdout)["error"]["message"]
