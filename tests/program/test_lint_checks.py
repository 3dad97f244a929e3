"""Lint looks inside checks: every regex compiles, every JSON Schema is valid, and every ``$ref``
resolves inside the score or beside it (HCT281-283), without reading a file outside the score's
directory or opening a connection."""

from __future__ import annotations

import builtins
import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from hct_cli.program.lint import lint_text
from hct_cli.score.findings import LintResult

pytestmark = pytest.mark.timeout(60)

OUTSIDE = "TOP-SECRET-OUTSIDE-THE-SCORE"
BESIDE = "CONTENT-OF-A-FILE-BESIDE-THE-SCORE"


def _score(schema: dict[str, Any], where: str = "fermata") -> str:
    check = json.dumps({"json_schema": schema})
    if where == "fermata":
        agent = f"    fermata:\n      check: {check}\n"
    else:
        agent = f"    vamp:\n      max: 2\n      until: {check}\n"
    return f"hct: 1\nname: t\nagents:\n  a:\n    prompt: Reply with JSON.\n{agent}"


def _lint(text: str, base: Path) -> LintResult:
    return lint_text(text, "score.yaml", base=base / "score.yaml")


def _found(result: LintResult) -> list[tuple[str, str, int, int]]:
    return [(f.severity.value, f.code, f.line, f.col) for f in result.findings]


@pytest.fixture
def opened() -> list[str]:
    """Every file opened during the test."""
    return []


@pytest.fixture
def score_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[str]) -> Path:
    """A score's directory with schema files beside the score and a secret one level up; files
    opened are recorded, connections refused."""
    here = tmp_path / "score"
    here.mkdir()
    (here / "defs.json").write_text(
        json.dumps({"$defs": {"n": {"type": "integer"}}, "title": BESIDE}),
        encoding="utf-8",
    )
    (here / "nested.json").write_text(json.dumps({"$ref": "defs.json#/$defs/nope"}), encoding="utf-8")
    (here / "leaks.json").write_text(json.dumps({"$ref": "../secret.json"}), encoding="utf-8")
    (here / "notes.txt").write_text(BESIDE, encoding="utf-8")
    (tmp_path / "secret.json").write_text(json.dumps({"title": OUTSIDE}), encoding="utf-8")
    real_open = builtins.open

    def recording_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def refuse(*args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"lint tried to reach the network: {args!r}")

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return here


def _never_read_outside(score_dir: Path, opened: list[str]) -> None:
    assert (score_dir / "defs.json").exists() and opened is not None
    assert all(Path(p).resolve() != (score_dir.parent / "secret.json").resolve() for p in opened), opened


def test_refs_inside_the_score_and_beside_it_pass_lint(score_dir: Path) -> None:
    schema = {
        "$defs": {"m": {"type": "string"}},
        "properties": {"a": {"$ref": "#/$defs/m"}, "b": {"$ref": "defs.json#/$defs/n"}},
    }
    assert _found(_lint(_score(schema), score_dir)) == []


def test_a_pointer_into_nowhere_of_a_file_beside_the_score_quotes_no_content(score_dir: Path) -> None:
    result = _lint(_score({"$ref": "nested.json"}), score_dir)
    [finding] = result.findings
    assert (finding.code, finding.severity.value, finding.line) == ("HCT283", "error", 7)
    assert "/$defs/nope does not exist in defs.json" in finding.message
    assert BESIDE not in finding.message + finding.hint


def test_a_file_that_is_not_json_is_named_and_not_quoted(score_dir: Path) -> None:
    [finding] = _lint(_score({"$ref": "notes.txt"}, where="vamp"), score_dir).findings
    assert finding.code == "HCT283" and "notes.txt is not JSON" in finding.message
    assert BESIDE not in finding.message + finding.hint


@pytest.mark.parametrize("ref", ["../secret.json", "leaks.json"])
def test_a_ref_out_of_the_directory_is_a_warning_and_the_file_is_never_read(
    ref: str, score_dir: Path, opened: list[str]
) -> None:
    [finding] = _lint(_score({"properties": {"x": {"$ref": ref}}}), score_dir).findings
    assert (finding.code, finding.severity.value) == ("HCT283", "warning")
    assert "lies outside" in finding.message and "--allow-path" in finding.hint
    assert OUTSIDE not in finding.message
    if ref == "leaks.json":
        assert any(Path(p).name == "leaks.json" for p in opened)  # the guard does see what lint reads
    _never_read_outside(score_dir, opened)


@pytest.mark.parametrize(
    "ref",
    [
        "http://127.0.0.1:9/item.json",
        "https://example.com/item.json",
        "//example.com/item.json",
        "urn:example:item",
        "file:///etc/passwd",
    ],
)
def test_a_ref_with_a_scheme_or_a_host_is_an_error_and_nothing_is_fetched(ref: str, score_dir: Path) -> None:
    [finding] = _lint(_score({"items": {"$ref": ref}}), score_dir).findings
    assert (finding.code, finding.severity.value, finding.line) == ("HCT283", "error", 7)
    assert ref in finding.message and "never fetches" in finding.message
    assert "$defs" in finding.hint


def test_a_ref_under_a_data_keyword_is_data_not_a_reference(score_dir: Path) -> None:
    schema = {
        "const": {"$ref": "http://127.0.0.1:9/x"},
        "properties": {"enum": {"$ref": "#/$defs/n"}},
        "$defs": {"n": {}},
    }
    assert _found(_lint(_score(schema), score_dir)) == []


def test_a_registered_metaschema_is_not_a_remote_ref(score_dir: Path) -> None:
    assert _found(_lint(_score({"$ref": "https://json-schema.org/draft/2020-12/schema"}), score_dir)) == []


def test_an_invalid_schema_points_at_the_offending_keyword(score_dir: Path) -> None:
    text = _score({"type": "object", "properties": {"n": {"minimum": "zero"}}})
    [finding] = _lint(text, score_dir).findings
    assert finding.code == "HCT282" and "'zero' is not of type 'number'" in finding.message
    line = text.splitlines()[finding.line - 1]
    assert line[finding.col - 1 :].startswith('"zero"')


def test_a_regex_finding_points_at_the_pattern() -> None:
    text = "hct: 1\nname: t\nagents:\n  a:\n    prompt: hi\n    fermata:\n      check: {regex: '(a', min_length: 2}\n"
    [finding] = lint_text(text).findings
    assert (finding.code, finding.line) == ("HCT281", 7)
    assert finding.col == text.splitlines()[6].index("'(a'") + 1
    assert "missing )" in finding.message and "escape a literal" in finding.hint
