"""The score language: load (YAML with positions), validate (JSON Schema), model, lint."""

from __future__ import annotations

from pathlib import Path

from hct_cli.errors import ScoreError
from hct_cli.score.findings import Finding, Severity
from hct_cli.score.lint import LintResult, lint_path
from hct_cli.score.model import Agent, Score

__all__ = ["Agent", "Finding", "LintResult", "Score", "Severity", "lint_path", "load_score", "load_score_text"]


def load_score_text(text: str, file: str, base: Path | None = None) -> Score:
    """Load, validate and lint a score given as text (a journaled one); ``base`` stands for its path."""
    from hct_cli.score.lint import lint_text

    return _checked(lint_text(text, file, base=base), file)


def load_score(path: Path | str) -> Score:
    """Load, validate and lint a score; raise :class:`ScoreError` if it has errors.

    Warnings and notes do not stop a score from loading; they are available from
    :func:`lint_path`.
    """
    return _checked(lint_path(Path(path), str(path)), str(path))


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
