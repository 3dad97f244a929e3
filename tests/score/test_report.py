from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from hct_cli.program.lint import lint_path
from hct_cli.score.report import render

pytestmark = pytest.mark.timeout(30)

# The official OASIS SARIF 2.1.0 schema, vendored so a clean clone anywhere can run the test.
SARIF_SCHEMA = Path(__file__).resolve().parents[1] / "resources" / "sarif-schema-2.1.0.json"

BROKEN = """\
hct: 1
name: broken
coherence: off
state:
  k: {initial: 0}
agents:
  a:
    prompt: "x {{ cues.zz }}"
    writes: [k]
    model: not-a-model
  b:
    prompt: "y"
    reads: [k]
"""


@pytest.fixture
def results(tmp_path: Path) -> list:  # type: ignore[type-arg]
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    return [lint_path(path, "scores/broken.yaml")]


def test_text_shows_source_line_caret_and_hint(results: list) -> None:  # type: ignore[type-arg]
    text = render(results, "text")
    assert "scores/broken.yaml:8:19: error[HCT223]: template uses cues.zz" in text
    assert ' 8 |     prompt: "x {{ cues.zz }}"' in text
    assert "   |                   ^" in text
    assert "hint:" in text
    assert text.rstrip().endswith("1 file checked: 1 error, 2 warnings, 0 notes")


def test_json_is_one_document(results: list) -> None:  # type: ignore[type-arg]
    data = json.loads(render(results, "json"))
    assert data["ok"] is False
    assert data["summary"] == {"files": 1, "errors": 1, "warnings": 2, "notes": 0}
    codes = [(f["code"], f["line"], f["col"]) for f in data["files"][0]["findings"]]
    assert ("HCT223", 8, 19) in codes and ("HCT232", 10, 12) in codes


def test_github_annotations(results: list) -> None:  # type: ignore[type-arg]
    lines = render(results, "github").splitlines()
    assert lines[0].startswith("::error file=scores/broken.yaml,line=8,col=19,title=HCT223::template uses cues.zz")
    assert any(line.startswith("::warning file=scores/broken.yaml,line=10,col=12,title=HCT232::") for line in lines)


def test_github_escapes_newlines_and_percent() -> None:
    from hct_cli.score.report import _escape

    assert _escape("a%b\nc") == "a%25b%0Ac"
    assert _escape("x:y,z", prop=True) == "x%3Ay%2Cz"


def test_sarif_validates_against_the_oasis_schema(results: list) -> None:  # type: ignore[type-arg]
    assert SARIF_SCHEMA.is_file(), f"the OASIS SARIF schema is expected at {SARIF_SCHEMA}"
    document = json.loads(render(results, "sarif"))
    Draft7Validator(json.loads(SARIF_SCHEMA.read_text())).validate(document)
    run = document["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"HCT223", "HCT232", "HCT241"}
    first = run["results"][0]
    assert first["level"] == "error"
    assert first["locations"][0]["physicalLocation"]["region"] == {"startLine": 8, "startColumn": 19}


def test_clean_score_sarif_still_valid(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("hct: 1\nname: ok\nagents:\n  a: {prompt: hi}\n")
    document = json.loads(render([lint_path(path)], "sarif"))
    Draft7Validator(json.loads(SARIF_SCHEMA.read_text())).validate(document)
    assert document["runs"][0]["results"] == []
