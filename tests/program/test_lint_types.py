"""Lint of typed results (HCT215, HCT224, and the schema checks of ``output:`` and state keys):
each rule fires at the node or template text that causes it, a typed score that fits lints clean,
and field paths are followed through ``$ref`` (in the schema and to a file beside the score)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hct_cli.program.lint import lint_path
from hct_cli.score.findings import CODES, LintResult

pytestmark = pytest.mark.timeout(60)

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "types"
TYPED = ("HCT215", "HCT224", "HCT281", "HCT282", "HCT283")


def _found(result: LintResult) -> list[tuple[str, str, int, int]]:
    return [(f.code, f.severity.value, f.line, f.col) for f in result.findings if f.code in TYPED]


def test_each_rule_at_its_node() -> None:
    result = lint_path(RESOURCES / "lint-bad.yaml", "lint-bad.yaml")
    assert _found(result) == [
        ("HCT224", "error", 27, 10),  # cues.parse.fils: additionalProperties false
        ("HCT224", "error", 28, 10),  # files[5] past maxItems 3
        ("HCT224", "error", 29, 10),  # a field of a string
        ("HCT224", "warning", 30, 10),  # files[0].pth: through the $ref, undeclared
        ("HCT224", "warning", 31, 10),  # a field of a cue whose answer is text
        ("HCT215", "error", 32, 14),  # text written into an object key
        ("HCT215", "error", 33, 15),  # text appended to a list of integers
        ("HCT215", "warning", 38, 14),  # minimum 1 against maximum 0: the smallest instance breaks it
        ("HCT283", "error", 42, 60),  # an output: schema whose ref goes nowhere, at the ref
        ("HCT215", "error", 43, 15),  # appended to a key whose schema is not a list
    ]
    by_line = {f.line: f for f in result.findings}
    assert by_line[27].hint == "Did you mean 'files'?" and "cues.parse.fils" in by_line[27].message
    assert by_line[30].hint == "Did you mean 'path'?" and "cues.parse.files[0]" in by_line[30].message
    assert by_line[28].hint == "Use an index below 3."
    assert "output of 'broken'" in by_line[42].message
    for finding in result.findings:
        assert finding.hint and finding.code in CODES, finding


def test_a_typed_score_that_fits_lints_clean_and_a_typo_behind_a_file_ref_is_found(tmp_path: Path) -> None:
    for name in ("lint-good.yaml", "finding.schema.json"):
        shutil.copy(RESOURCES / name, tmp_path / name)
    result = lint_path(tmp_path / "lint-good.yaml", "lint-good.yaml")
    assert not result.findings, result.findings

    text = (tmp_path / "lint-good.yaml").read_text()
    (tmp_path / "lint-good.yaml").write_text(text.replace("state.findings[0].file", "state.findings[0].fle"))
    result = lint_path(tmp_path / "lint-good.yaml", "lint-good.yaml")
    assert [(f.code, f.severity.value, f.line) for f in result.findings] == [("HCT224", "warning", 26)]
    assert result.findings[0].hint == "Did you mean 'file'?"

    (tmp_path / "finding.schema.json").write_text('{"type": "string"}')
    result = lint_path(tmp_path / "lint-good.yaml", "lint-good.yaml")
    # The review's answer and the findings' items are strings now: both steps into them are wrong.
    assert [(f.code, f.severity.value, f.line) for f in result.findings] == [("HCT224", "error", 26)] * 2
    assert {f.message.split(", but ")[1] for f in result.findings} == {
        "cues.review is a string by its schema, with no field 'severity'",
        "state.findings[0] is a string by its schema, with no field 'fle'",
    }
