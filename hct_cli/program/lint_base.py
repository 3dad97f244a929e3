"""What every lint rule shares: the score and its document, and findings placed at their node.

The semantic checks of a schema-valid score are grouped by what they look at:
:mod:`~hct_cli.program.lint_graph` (the cue graph and what may run at once),
:mod:`~hct_cli.program.lint_agents` (state, templates, signals, inputs) and
:mod:`~hct_cli.program.lint_calls` (what a call compiles to: its route, window and checks).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from hct_cli.score.findings import Finding, Severity
from hct_cli.score.load import Document, JsonPath
from hct_cli.score.model import Agent, Check, Score, checks_of

__all__ = ["Rules"]


class Rules:
    """A lint rule set over one score: each rule method yields findings."""

    def __init__(self, score: Score, doc: Document) -> None:
        self.score = score
        self.doc = doc
        self.agents = score.agents

    def at(
        self, path: JsonPath, severity: Severity, code: str, message: str, hint: str, *, key: bool = False
    ) -> Finding:
        return Finding(self.doc.file, self.doc.pos(path, key=key), severity, code, message, hint)

    def error(self, path: JsonPath, code: str, message: str, hint: str, *, key: bool = False) -> Finding:
        return self.at(path, Severity.ERROR, code, message, hint, key=key)

    @staticmethod
    def _did_you_mean(name: str, choices: Mapping[str, object]) -> str:
        import difflib

        close = difflib.get_close_matches(name, list(choices), n=1)
        return f"Did you mean {close[0]!r}?" if close else ""

    @staticmethod
    def _checks(agent: Agent) -> Iterator[tuple[JsonPath, Check]]:
        for where, check in checks_of(agent):
            yield ("agents", agent.name, *where), check
