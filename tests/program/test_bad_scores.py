"""The corpus of broken scores: each file pins the exact code, severity and line of every finding.

``tests/resources/scores/bad/expected.json`` maps each file to every finding ``hct lint``
must report for it, as ``[severity, code, line]`` in report order. The expectations were
worked out from the files themselves (which node is wrong), not copied from the linter's
output; where the linter still disagrees, the case is marked ``xfail(strict=True)`` below with
the reason, so fixing the linter turns it into a pass that must be un-marked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hct_cli.cli import app
from hct_cli.program.lint import lint_path
from hct_cli.score.findings import CODES, LintResult
from hct_cli.score.load import MAX_BYTES

pytestmark = pytest.mark.timeout(60)

BAD = Path(__file__).resolve().parents[1] / "resources" / "scores" / "bad"
MANIFEST = BAD / "expected.json"

Expected = list[tuple[str, str, int]]

#: Files where the linter is known to report the wrong position; the manifest holds the right one.
KNOWN_LINTER_BUGS: dict[str, str] = {}

#: Files whose findings currently point past the end of the file.
PAST_END_OF_FILE: set[str] = set()


def _manifest() -> dict[str, Expected]:
    raw: dict[str, list[list[object]]] = json.loads(MANIFEST.read_text("utf-8"))
    return {
        name: [(str(severity), str(code), int(str(line))) for severity, code, line in entries]
        for name, entries in raw.items()
    }


EXPECTED = _manifest()


def _cases(xfail: dict[str, str]) -> list[object]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=xfail[name])) if name in xfail else name
        for name in sorted(EXPECTED)
    ]


def _lint(name: str) -> LintResult:
    return lint_path(BAD / name, name)


def test_manifest_covers_every_file() -> None:
    on_disk = {p.name for p in BAD.iterdir() if p.is_file() and p != MANIFEST}
    assert on_disk == set(EXPECTED), "every bad score needs an entry in expected.json, and only those"
    assert len(EXPECTED) >= 30
    for name, entries in EXPECTED.items():
        assert entries, f"{name}: a bad score must have at least one finding"
        for severity, code, line in entries:
            assert severity in ("error", "warning", "note"), name
            assert code in CODES, f"{name}: {code} is not a known finding code"
            assert line >= 1, name
    assert set(KNOWN_LINTER_BUGS) <= set(EXPECTED)


def test_empty_fixture_is_zero_bytes() -> None:
    assert (BAD / "empty.yaml").stat().st_size == 0


def test_not_utf8_fixture_holds_invalid_bytes() -> None:
    with pytest.raises(UnicodeDecodeError):
        (BAD / "not_utf8.yaml").read_bytes().decode("utf-8")


@pytest.mark.parametrize("name", _cases(KNOWN_LINTER_BUGS))
def test_bad_score_findings(name: str) -> None:
    result = _lint(name)
    got = [(f.severity.value, f.code, f.line) for f in result.findings]
    assert got == EXPECTED[name]


@pytest.mark.parametrize(
    "name",
    _cases({n: "finding points past the end of the file" for n in PAST_END_OF_FILE}),
)
def test_findings_are_well_formed(name: str) -> None:
    result = _lint(name)
    assert result.findings
    lines = (BAD / name).read_bytes().decode("utf-8", "replace").splitlines()
    for f in result.findings:
        assert f.file == name
        assert f.line >= 1 and f.col >= 1, f
        assert f.message.strip(), f
        assert f.hint.strip(), f
        assert f.code in CODES, f
        assert f.line <= max(1, len(lines)), f"{f.line}:{f.col} lies past the end of {name} ({len(lines)} lines)"
        if lines:
            assert f.col <= len(lines[f.line - 1]) + 1, f"{f.line}:{f.col} lies past the end of its line"


def test_oversize_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "too_large.yaml"
    score = b"hct: 1\nname: too-large\nagents:\n  a:\n    prompt: hi\n"
    with path.open("wb") as handle:
        handle.write(score)
        handle.write(b"# " + b"x" * (MAX_BYTES - len(score)) + b"\n")
    assert path.stat().st_size > MAX_BYTES
    result = lint_path(path, "too_large.yaml")
    assert [(f.severity.value, f.code, f.line) for f in result.findings] == [("error", "HCT003", 1)]
    assert result.score is None


def test_missing_file_is_a_finding(tmp_path: Path) -> None:
    result = lint_path(tmp_path / "nowhere.yaml", "nowhere.yaml")
    assert [(f.severity.value, f.code, f.line) for f in result.findings] == [("error", "HCT001", 1)]


# -- through the real command line -----------------------------------------------------------

runner = CliRunner()


def test_cli_json_matches_lint_path() -> None:
    names = sorted(EXPECTED)
    result = runner.invoke(app, ["lint", "--format", "json", *(str(BAD / n) for n in names)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert len(report["files"]) == len(names)
    for name, entry in zip(names, report["files"], strict=True):
        assert Path(entry["file"]).name == name
        cli = [(f["severity"], f["code"], f["line"]) for f in entry["findings"]]
        direct = [(f.severity.value, f.code, f.line) for f in lint_path(BAD / name, str(BAD / name)).findings]
        assert cli == direct, name


def test_cli_bad_score_exits_1() -> None:
    result = runner.invoke(app, ["lint", str(BAD / "cue_cycle.yaml")])
    assert result.exit_code == 1, result.output
    assert "HCT201" in result.output
    assert "cue_cycle.yaml:9:" in result.output


def test_cli_warnings_only_exit_0_unless_strict() -> None:
    path = str(BAD / "unknown_model.yaml")
    assert [f.severity.value for f in _lint("unknown_model.yaml").findings] == ["warning"]
    result = runner.invoke(app, ["lint", path])
    assert result.exit_code == 0, result.output
    assert "HCT232" in result.output
    result = runner.invoke(app, ["lint", "--strict", path])
    assert result.exit_code == 1, result.output


def test_cli_unknown_format_exits_2() -> None:
    result = runner.invoke(app, ["lint", "--format", "nope", str(BAD / "cue_cycle.yaml")])
    assert result.exit_code == 2, result.output
