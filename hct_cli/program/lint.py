"""Lint: whether a score compiles, as positioned findings; and loading a score that does.

The semantic checks of a schema-valid score (the cue graph, state access, templates, routing,
context windows, what checks contain) each yield :class:`~hct_cli.score.findings.Finding`
objects positioned at the node that causes them; they live in the ``lint_*`` modules beside
this one (tools: :mod:`~hct_cli.program.lint_tools`, which checks tool names against the
servers' listed tools when the caller knows them, ``tool_lists``). :func:`lint_path` runs the whole pipeline (load, schema, semantics) on one file and
never raises for a problem in the file: every problem is a finding. :func:`load_score` is the
same pipeline that refuses a score with errors, and gives its model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hct_cli.errors import ScoreError
from hct_cli.program.lint_agents import AgentRules
from hct_cli.program.lint_calls import CallRules
from hct_cli.program.lint_graph import GraphRules
from hct_cli.program.lint_tools import ToolRules
from hct_cli.program.lint_types import TypeRules
from hct_cli.score.findings import Finding, LintResult, Severity
from hct_cli.score.load import Document, load_document, load_text
from hct_cli.score.model import Score, build_score
from hct_cli.score.validate import validate

__all__ = ["check_score", "lint_path", "lint_text", "load_score", "load_score_text"]


ToolLists = Mapping[str, Sequence[str]]


def lint_path(path: Path, display: str | None = None, *, tool_lists: ToolLists | None = None) -> LintResult:
    """Load, validate and check the score at ``path``; ``tool_lists`` (server -> its tool names,
    as ``hct tools`` saw them) lets lint check that each tool an agent names exists."""
    file = display if display is not None else str(path)
    try:
        doc = load_document(path, file)
    except ScoreError as exc:
        return LintResult(file, exc.findings, None)
    return _lint_document(doc, path, tool_lists)


def lint_text(
    text: str | bytes, file: str = "<score>", *, base: Path | None = None, tool_lists: ToolLists | None = None
) -> LintResult:
    """Lint a score given as text; ``base`` stands for the score's path (for default_file)."""
    try:
        doc = load_text(text, file)
    except ScoreError as exc:
        return LintResult(file, exc.findings, None)
    return _lint_document(doc, base, tool_lists)


def _lint_document(doc: Document, path: Path | None, tool_lists: ToolLists | None = None) -> LintResult:
    file = doc.file
    findings = validate(doc)
    if findings:
        return LintResult(file, tuple(findings), None, doc)
    score = build_score(doc.data, path=path, document=doc)
    semantic = sorted(check_score(score, doc, tool_lists), key=lambda f: (f.pos, f.code))
    return LintResult(file, tuple(semantic), score, doc)


def check_score(score: Score, doc: Document, tool_lists: ToolLists | None = None) -> list[Finding]:
    """Every semantic finding for a schema-valid score."""
    graph, agents, calls = GraphRules(score, doc), AgentRules(score, doc), CallRules(score, doc)
    cycle_findings, on_cycle = graph.cycles()
    findings = [*graph.cues(), *cycle_findings, *graph.unreachable(on_cycle)]
    findings += [*agents.state(), *agents.templates(), *calls.routing()]
    findings += [*graph.conflicts(on_cycle), *agents.signals(), *calls.check_contents()]
    findings += [*agents.inputs(), *calls.windows()]
    types = TypeRules(score, doc)
    findings += [*types.contents(), *types.fields(), *types.writers()]
    tools = ToolRules(score, doc, tool_lists)
    findings += [*tools.references(), *tools.effects(), *tools.kinds(), *tools.scripts(), *tools.server_entries()]
    return findings


def load_score_text(text: str, file: str, base: Path | None = None) -> Score:
    """Load, validate and lint a score given as text (a journaled one); ``base`` stands for its path."""
    return _checked(lint_text(text, file, base=base), file)


def load_score(path: Path | str, *, tool_lists: ToolLists | None = None) -> Score:
    """Load, validate and lint a score; raise :class:`ScoreError` if it has errors.

    Warnings and notes do not stop a score from loading; they are available from
    :func:`lint_path`. ``tool_lists`` are the servers' known tool names, as for :func:`lint_path`.
    """
    return _checked(lint_path(Path(path), str(path), tool_lists=tool_lists), str(path))


def _checked(result: LintResult, path: str) -> Score:
    errors = [f for f in result.findings if f.severity is Severity.ERROR]
    if errors or result.score is None:
        first = errors[0] if errors else None
        where = f" ({first.file}:{first.line}:{first.col}: {first.message})" if first else ""
        raise ScoreError(
            f"{path} has {len(errors)} error{'s' if len(errors) != 1 else ''}{where}",
            errors,
            hint=f"Run `hct lint {path}` to see every finding with its fix.",
        )
    return result.score
