"""The score language: load (YAML with positions), validate (JSON Schema), model, tempo, findings.

Whether a score compiles (lint) and loading one that does are :mod:`hct_cli.program.lint`'s.
"""

from __future__ import annotations

from hct_cli.score.findings import Finding, LintResult, Severity
from hct_cli.score.model import Agent, Score

__all__ = ["Agent", "Finding", "LintResult", "Score", "Severity"]
