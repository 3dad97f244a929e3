"""``hct lint``: check scores and report every finding with its position and fix."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hct_cli.errors import UsageError
from hct_cli.program.lint import lint_path, load_score
from hct_cli.redact import Redactor
from hct_cli.score import Score
from hct_cli.score.findings import LintResult, Severity
from hct_cli.score.report import FORMATS, render

__all__ = ["lint", "load_listed_score"]


def _lint_one(path: Path) -> LintResult:
    """Lint ``path``; again against the servers' tool lists when `hct tools` saved some."""
    result = lint_path(path, str(path))
    if result.score is None or not result.score.tools:
        return result
    from hct_cli.store.home import home_dir
    from hct_cli.tools.listing import load_listings

    listed = load_listings(home_dir() / "tools", result.score.tools)
    return lint_path(path, str(path), tool_lists=listed) if listed else result


def load_listed_score(path: Path) -> Score:
    """Load a score as ``hct lint`` checks it: against the tool lists ``hct tools`` saved too, so
    that ``hct perform`` refuses an agent naming a tool its server does not offer before any run
    exists, rather than failing that agent once the run is under way."""
    score = load_score(path)
    if not score.tools:
        return score
    from hct_cli.store.home import home_dir
    from hct_cli.tools.listing import load_listings

    listed = load_listings(home_dir() / "tools", score.tools)
    return load_score(path, tool_lists=listed) if listed else score


def lint(paths: Sequence[Path], fmt: str, *, strict: bool) -> int:
    """Lint ``paths``; 0 when clean, 1 on errors (or warnings with ``strict``)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint=f"Use --format with one of: {', '.join(FORMATS)}.")
    if not paths:
        raise UsageError("no score given", hint="Name one or more files: hct lint scores/*.yaml")
    results = [_lint_one(path) for path in paths]
    sys.stdout.write(Redactor.from_environ().text(render(results, fmt)) + "\n")  # a score may hold a key
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return 1 if any(f.severity in failing for r in results for f in r.findings) else 0
