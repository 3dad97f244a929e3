"""A finding: one positioned problem in a score, the catalogue of finding codes, and a file's findings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hct_cli.score.load import Document
    from hct_cli.score.model import Score

__all__ = ["CODES", "Finding", "LintResult", "Pos", "Severity"]


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, order=True)
class Pos:
    """A 1-based line and column in a score file."""

    line: int = 1
    col: int = 1


#: Every code hct lint can emit, with a one-line summary (used by SARIF rules and docs).
CODES: dict[str, str] = {
    "HCT001": "file cannot be read",
    "HCT002": "file is not valid UTF-8",
    "HCT003": "file is too large",
    "HCT004": "YAML syntax error",
    "HCT005": "duplicate key",
    "HCT006": "YAML alias expansion too large",
    "HCT007": "YAML tag not allowed",
    "HCT008": "empty score",
    "HCT101": "unknown key",
    "HCT102": "missing required key",
    "HCT103": "wrong type",
    "HCT104": "value not allowed",
    "HCT201": "cue cycle",
    "HCT202": "cue to an unknown agent",
    "HCT203": "unreachable agent",
    "HCT204": "cue of a name that is not a cue of the agent",
    "HCT211": "undeclared state key",
    "HCT212": "write to the immutable reference frame",
    "HCT213": "appended key does not start as a list",
    "HCT214": "key both written and appended",
    "HCT215": "a writer's result cannot satisfy the schema of the state key it writes or appends to",
    "HCT221": "template syntax error",
    "HCT222": "template construct not allowed",
    "HCT223": "template refers to something the agent did not declare",
    "HCT224": "a template's field path does not exist in the schema of the value it steps into",
    "HCT231": "unknown routing tier",
    "HCT232": "model unknown to the price map",
    "HCT241": "concurrent agents read and write the same key",
    "HCT251": "vamp without max",
    "HCT252": "human approval without timeout",
    "HCT253": "agent runs code and needs --allow-exec",
    "HCT261": "input default problem",
    "HCT262": "input without a default or required",
    "HCT271": "prompt and reference frame overflow the model's window",
    "HCT281": "regex does not compile",
    "HCT282": "JSON Schema not valid against its metaschema",
    "HCT283": "JSON Schema $ref refused or unresolvable",
    "HCT291": "tool reference to an unknown server",
    "HCT292": "tool the server does not list",
    "HCT293": "bare tool name offered by several servers",
    "HCT294": "agent with write tools without max_steps",
    "HCT295": "write tool on an agent that may speculate",
    "HCT296": "tools or max_steps on an agent that is not llm",
    "HCT297": "scripted tool call outside the agent's tools",
    "HCT298": "tool server command refers to something other than a declared input",
    "HCT299": "tool server setting its transport ignores",
}


@dataclass(frozen=True)
class Finding:
    """One problem, positioned at the offending node of a score file."""

    file: str
    pos: Pos
    severity: Severity
    code: str
    message: str
    hint: str = ""

    @property
    def line(self) -> int:
        return self.pos.line

    @property
    def col(self) -> int:
        return self.pos.col

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class LintResult:
    """The findings for one file, and its model when it got that far."""

    file: str
    findings: tuple[Finding, ...]
    score: Score | None
    document: Document | None = None
