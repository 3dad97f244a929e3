"""Property test: scores carrying hostile values never make lint or perform print a traceback.

The documents are well-formed scores whose numbers, strings, regexes and JSON Schemas come from
pools of hostile values: non-finite and out-of-range numbers, lone surrogates, regexes that do
not compile or backtrack catastrophically, schemas that are not schemas or whose ``$ref`` points
outside the score (a file, a URL). Lint must answer each with positioned findings; a score that
passes lint must perform under ``--simulate`` to an exit code and, with ``--json``, exactly one
strictly valid JSON document on stdout.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.program.lint import lint_text
from hct_cli.score.findings import Finding, LintResult, Severity

pytestmark = pytest.mark.timeout(900)

runner = CliRunner()

# Non-finite numbers cannot pass through JSON: they travel as these markers and become YAML's own
# spellings in the text.
_NAN, _INF, _NINF = "\x00nan\x00", "\x00inf\x00", "\x00-inf\x00"
_YAML_SPELLING = {_NAN: ".nan", _INF: ".inf", _NINF: "-.inf"}

NUMBERS = st.sampled_from([_NAN, _INF, _NINF, 0, -1, 1e309, 10**30, 0.5, 3, 2.5e-300, -0.0])
TEXTS = st.sampled_from(
    [
        "x\ud800y",
        "\udfff",
        "ok",
        "",
        "{{ cues.a }}",
        "{{ inputs.q }}",
        "a" * 40 + "!",
        '{"k": NaN}',
        '{"k": Infinity}',
        "\u202e\u0000",
    ]
)
REGEXES = st.sampled_from(["(", "[z-a]", "^(a+)+$", "(?P<x", "a{99999999999}", "\\", "ok", "^[a-z]+$", "(?i)x"])
SCHEMAS = st.sampled_from(
    [
        {"type": 12},
        {"type": "object"},
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
        {"$ref": "#/$defs/missing"},
        {"$ref": "file:///etc/passwd"},
        {"$ref": "http://127.0.0.1:9/schema.json"},
        {"$ref": "https://example.invalid/s.json"},
        {"$ref": "../../outside.json"},
        {"$ref": "beside.json"},
        {"$ref": "urn:nothing"},
        {"minLength": _NAN},
        {"pattern": "("},
        {"pattern": "^(a+)+$"},
    ]
)


def _check() -> Any:
    kinds = {
        "regex": REGEXES,
        "json_schema": SCHEMAS,
        "min_length": NUMBERS,
        "max_length": NUMBERS,
        "contains": TEXTS,
    }
    return st.fixed_dictionaries({}, optional=kinds)


def _simulate() -> Any:
    return st.fixed_dictionaries(
        {},
        optional={
            "latency_ms": NUMBERS,
            "prompt_tokens": NUMBERS,
            "output_tokens": NUMBERS,
            "pass_rate": NUMBERS,
            "output": TEXTS,
        },
    )


@st.composite
def hostile_scores(draw: st.DrawFn) -> dict[str, Any]:
    second: dict[str, Any] = {"prompt": draw(TEXTS) + " {{ cues.a }}", "cues": ["a"]}
    if draw(st.booleans()):
        second["simulate"] = {"output": draw(TEXTS)}
    where = draw(st.sampled_from(["fermata", "vamp", "tacet_if", "none"]))
    if where == "fermata":
        second["fermata"] = {"check": draw(_check()), "on_fail": draw(st.sampled_from(["retry", "escalate"]))}
    elif where == "vamp":
        second["vamp"] = {"until": draw(_check()), "max": draw(st.sampled_from([1, 2, _INF]))}
    elif where == "tacet_if":
        second["tacet_if"] = {"cue": "a", **draw(_check())}
    first: dict[str, Any] = {"prompt": draw(TEXTS), "simulate": draw(_simulate())}
    if draw(st.booleans()):
        first["timeout_s"] = draw(NUMBERS)
    score: dict[str, Any] = {
        "hct": 1,
        "name": "hostile",
        "inputs": {"q": {"default": draw(TEXTS)}},
        "agents": {"a": first, "b": second},
    }
    if draw(st.booleans()):
        score["routing"] = {"budget_usd": draw(NUMBERS)}
    return score


def _text(score: dict[str, Any]) -> str:
    """The score as YAML text: JSON (a YAML subset, surrogates as escapes) with YAML's non-finite spellings."""
    text = json.dumps(score, ensure_ascii=True, indent=1)
    for marker, spelling in _YAML_SPELLING.items():
        text = text.replace(json.dumps(marker), spelling)
    return text


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name} on stdout")

    return json.loads(text, parse_constant=refuse)


def _errors(result: LintResult) -> list[Finding]:
    return [f for f in result.findings if f.severity is Severity.ERROR]


SETTINGS = settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No check may reach out: any socket connection attempt fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a network connection was attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@SETTINGS
@given(hostile_scores())
def test_lint_answers_hostile_values_with_findings(score: dict[str, Any]) -> None:
    source = _text(score)
    result = lint_text(source, "hostile.yaml")
    lines = len(source.splitlines()) + 1
    for finding in result.findings:
        assert 1 <= finding.line <= lines and finding.col >= 1, finding
        assert finding.code.startswith("HCT") and finding.message and finding.hint, finding
    if not _errors(result):
        assert result.score is not None


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(score=hostile_scores())
def test_perform_of_whatever_lint_lets_through(score: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    source = _text(score)
    if _errors(lint_text(source, "hostile.yaml")):
        return
    folder = tmp_path_factory.mktemp("score")
    path = Path(folder) / "hostile.yaml"
    path.write_text(source, encoding="utf-8")
    options = ["--simulate", "--json", "--no-tui", "--no-cache", "--time-scale", "0.001"]
    result = runner.invoke(app, ["perform", str(path), *options])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in (0, 1, 2, 3, 4, 5), (result.exit_code, result.output)
    _strict_json(result.stdout)


def test_the_pools_hold_a_clean_score(tmp_path: Path) -> None:
    """The generator can produce a score that lints clean and completes, so the perform test runs."""
    score = {"hct": 1, "name": "hostile", "inputs": {"q": {"default": "ok"}}, "agents": {"a": {"prompt": "ok"}}}
    path = tmp_path / "clean.yaml"
    path.write_text(_text(score), encoding="utf-8")
    assert lint_text(_text(score), "clean.yaml").findings == ()
    result = runner.invoke(app, ["perform", str(path), "--simulate", "--json", "--no-tui", "--time-scale", "0.001"])
    assert result.exit_code == 0, result.output
    assert _strict_json(result.stdout)["status"] == "completed"
