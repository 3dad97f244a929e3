"""``hct lint``: check scores and report every finding with its position and fix."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from hct_cli.errors import UsageError
from hct_cli.program.lint import lint_path
from hct_cli.redact import Redactor
from hct_cli.score.findings import Severity
from hct_cli.score.report import FORMATS, render

__all__ = ["lint"]


def lint(paths: Sequence[Path], fmt: str, *, strict: bool) -> int:
    """Lint ``paths``; 0 when clean, 1 on errors (or warnings with ``strict``)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint=f"Use --format with one of: {', '.join(FORMATS)}.")
    if not paths:
        raise UsageError("no score given", hint="Name one or more files: hct lint scores/*.yaml")
    results = [lint_path(path, str(path)) for path in paths]
    sys.stdout.write(Redactor.from_environ().text(render(results, fmt)) + "\n")  # a score may hold a key
    failing = {Severity.ERROR, Severity.WARNING} if strict else {Severity.ERROR}
    return 1 if any(f.severity in failing for r in results for f in r.findings) else 0
