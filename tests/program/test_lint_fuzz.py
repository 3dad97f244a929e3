"""Property test: whatever bytes arrive, lint answers with positioned findings, never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hct_cli.program.lint import lint_text
from hct_cli.score.findings import LintResult

pytestmark = pytest.mark.timeout(600)

VALID = """\
hct: 1
name: fuzz
state:
  notes: {initial: []}
agents:
  a:
    prompt: "hello {{ inputs.q }}"
    appends: [notes]
  b:
    prompt: |
      merge {{ cues.a }} and {{ state.notes }}
    cues: [a]
    reads: [notes]
    fermata: {check: {min_length: 3}, on_fail: retry}
inputs:
  q: {default: x}
"""
VOCAB = [
    "hct",
    "name",
    "agents",
    "prompt",
    "cues",
    "reads",
    "writes",
    "appends",
    "state",
    "inputs",
    "tempo",
    "dynamics",
    "presto",
    "ff",
    "fermata",
    "check",
    "vamp",
    "max",
    "until",
    "tacet_if",
    "routing",
    "tiers",
    "table",
    "budget_usd",
    "kind",
    "python",
    "shell",
    "command",
    "call",
    "simulate",
    "latency_ms",
    "a",
    "b",
    "{{ cues.a }}",
    "{{ x() }}",
    "initial",
    "coherence",
    "off",
]
SETTINGS = settings(max_examples=700, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


def _check(source: str | bytes, result: LintResult) -> None:
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    lines = max(1, len(text.splitlines()) + 1)
    if not result.findings:
        assert result.score is not None, "no finding, yet no model either"
        return
    for finding in result.findings:
        assert 1 <= finding.line <= lines + 1, finding
        assert finding.col >= 1, finding
        assert finding.code.startswith("HCT") and finding.message and finding.hint


@SETTINGS
@given(st.lists(st.sampled_from(list(":-[]{}&*!|>'\"#%@`?,\t\n ab1") + VOCAB), max_size=60))
def test_yaml_noise(tokens: list[str]) -> None:
    source = "".join(tokens)
    _check(source, lint_text(source, "noise.yaml"))


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID)), st.integers(0, 12), st.text(max_size=8)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_valid_score(edits: list[tuple[int, int, str]]) -> None:
    text = VALID
    for at, remove, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + remove :]
    _check(text, lint_text(text, "mutated.yaml"))


json_values: Any = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(VOCAB),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(VOCAB), inner, max_size=4),
    max_leaves=25,
)


@SETTINGS
@given(st.dictionaries(st.sampled_from(VOCAB), json_values, min_size=1, max_size=6))
def test_structured_nonsense(data: dict[str, Any]) -> None:
    source = json.dumps(data, indent=1)
    _check(source, lint_text(source, "structured.yaml"))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=120))
def test_raw_bytes(source: bytes) -> None:
    _check(source, lint_text(source, "bytes.yaml"))


def test_the_valid_seed_is_valid() -> None:
    assert lint_text(VALID, "valid.yaml").findings == ()
