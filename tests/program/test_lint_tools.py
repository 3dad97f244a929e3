"""Lint of tools (HCT291-299): every rule fires at the node that causes it, with a hint, and a
score that uses tools well lints clean, with and without the servers' tool lists known."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from hct_cli.program.lint import lint_path, lint_text
from hct_cli.score.findings import CODES, LintResult

pytestmark = pytest.mark.timeout(60)

RESOURCES = Path(__file__).resolve().parents[1] / "resources" / "tools"
LISTS = {"git": ["git_status", "git_log", "git_diff"], "other": ["git_status"]}


def _lint(name: str, tool_lists: Mapping[str, Sequence[str]] | None = None) -> LintResult:
    return lint_path(RESOURCES / name, name, tool_lists=tool_lists)


def _found(result: LintResult) -> list[tuple[str, int, int]]:
    return [(f.code, f.line, f.col) for f in result.findings if f.code.startswith("HCT29")]


def test_each_rule_at_its_node_with_the_lists_known() -> None:
    result = _lint("lint-bad.yaml", LISTS)
    assert _found(result) == [
        ("HCT298", 7, 82),  # {{ state.x }} in a command
        ("HCT299", 9, 5),  # headers_env on a command server
        ("HCT299", 12, 5),  # env on a url server
        ("HCT298", 15, 33),  # an undeclared input
        ("HCT294", 25, 5),  # write tools, no max_steps: at the tools key
        ("HCT291", 25, 13),  # nosuch.thing
        ("HCT292", 25, 27),  # git.git_nope, git's list is known
        ("HCT293", 25, 41),  # git_status offered by git and other
        ("HCT295", 25, 41),  # ... and other's git_status may write, behind a speculating gate
        ("HCT295", 25, 53),  # fs.write_file behind the speculating gate
        ("HCT297", 28, 19),  # a scripted call outside the agent's tools
        ("HCT296", 32, 5),  # tools on a shell agent
        ("HCT296", 33, 5),  # max_steps on a shell agent
        ("HCT295", 38, 13),  # fs.* (a write rule) on an attacca agent
    ]
    for finding in result.findings:
        assert finding.hint, finding
        assert finding.code in CODES
    severities = {(f.code, f.severity.value) for f in result.findings if f.code.startswith("HCT29")}
    assert ("HCT299", "warning") in severities
    warnings = {"HCT295", "HCT297", "HCT299"}  # the run holds such a write, refuses such a call
    assert {c for c, s in severities if s == "warning"} == warnings
    assert all(s == "error" for c, s in severities if c not in warnings)
    hints = {f.code: f.hint for f in result.findings}
    assert "git.git_status or other.git_status" in hints["HCT293"]
    assert "git_log" in hints["HCT292"]  # the closest listed name
    assert "after the gate" in hints["HCT295"]


def test_unknown_lists_check_only_what_the_score_says() -> None:
    """Without the servers' lists no tool name can be refused, and a bare name is not ambiguous yet."""
    codes = [code for code, _, _ in _found(_lint("lint-bad.yaml"))]
    assert "HCT292" not in codes
    assert "HCT293" not in codes
    assert codes.count("HCT291") == 1


def test_a_changed_list_refuses_a_tool_it_no_longer_has() -> None:
    result = _lint("lint-clean.yaml", {"git": ["git_log"], "fs": ["read_text_file", "write_file"]})
    assert _found(result) == [("HCT292", 21, 26)]  # git_diff, which no server lists


@pytest.mark.parametrize(
    "lists", [None, {"git": ["git_log", "git_diff", "git_show"], "fs": ["read_text_file", "write_file"]}]
)
def test_a_score_using_tools_well_lints_clean(lists: Mapping[str, Sequence[str]] | None) -> None:
    result = _lint("lint-clean.yaml", lists)
    assert result.findings == ()
    assert result.score is not None


def test_a_read_server_star_needs_no_max_steps_and_a_write_one_does() -> None:
    score = """hct: 1
name: t
tools:
  ro: {command: [ro-server], effects: read}
  rw: {command: [rw-server]}
agents:
  a:
    prompt: Look.
    tools: [ro.*]
  b:
    prompt: Change.
    tools: [rw.*]
"""
    result = lint_text(score, "t.yaml")
    assert [(f.code, f.line, f.col) for f in result.findings] == [("HCT294", 12, 5)]
    # once rw's list is known and none of its tools writes, b reaches no write tool
    listed = lint_text(
        score.replace("[rw-server]}", "[rw-server], tools: {x: {effects: read}}}"), "t.yaml", tool_lists={"rw": ["x"]}
    )
    assert listed.findings == ()


def test_lists_of_other_servers_are_ignored() -> None:
    result = _lint("lint-clean.yaml", {"elsewhere": ["git_diff"]})
    assert result.findings == ()


def test_a_tool_without_any_server_declared() -> None:
    result = lint_text("hct: 1\nname: t\nagents:\n  a:\n    prompt: Hi.\n    tools: [git_log]\n", "t.yaml")
    assert [(f.code, f.line, f.col) for f in result.findings] == [("HCT291", 6, 13)]
    assert "declares no tool servers" in result.findings[0].message
