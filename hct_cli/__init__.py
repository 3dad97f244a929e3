"""hct: run teams of LLM agents from a declarative YAML score.

The public API is importable from here; heavy parts load only when first used, so
``import hct_cli`` stays cheap::

    import hct_cli

    result = hct_cli.perform("scores/code-review.yaml", simulate=True)
    print(result.status, result.cost_usd)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CredentialsError",
    "ExecNotAllowedError",
    "HctError",
    "InputError",
    "ProviderError",
    "Run",
    "RunConfig",
    "RunError",
    "RunResult",
    "Score",
    "ScoreError",
    "UnknownProviderError",
    "UsageError",
    "__version__",
    "aperform",
    "lint",
    "lint_path",
    "load",
    "load_score",
    "perform",
    "prepare",
]

if TYPE_CHECKING:
    from hct_cli.engine.result import RunResult
    from hct_cli.errors import (
        CredentialsError,
        ExecNotAllowedError,
        HctError,
        InputError,
        RunError,
        ScoreError,
        UnknownProviderError,
        UsageError,
    )
    from hct_cli.program.lint import lint_path, load_score
    from hct_cli.providers.base import ProviderError
    from hct_cli.run.api import aperform, perform
    from hct_cli.run.assemble import Run, prepare
    from hct_cli.score import Score
    from hct_cli.store.journal import RunConfig

    lint = lint_path
    load = load_score

#: Public name -> (module, attribute there).
_LAZY = {
    "CredentialsError": ("hct_cli.errors", "CredentialsError"),
    "ExecNotAllowedError": ("hct_cli.errors", "ExecNotAllowedError"),
    "HctError": ("hct_cli.errors", "HctError"),
    "InputError": ("hct_cli.errors", "InputError"),
    "RunError": ("hct_cli.errors", "RunError"),
    "ScoreError": ("hct_cli.errors", "ScoreError"),
    "UnknownProviderError": ("hct_cli.errors", "UnknownProviderError"),
    "UsageError": ("hct_cli.errors", "UsageError"),
    "ProviderError": ("hct_cli.providers.base", "ProviderError"),
    "RunResult": ("hct_cli.engine.result", "RunResult"),
    "RunConfig": ("hct_cli.store.journal", "RunConfig"),
    "Run": ("hct_cli.run.assemble", "Run"),
    "prepare": ("hct_cli.run.assemble", "prepare"),
    "perform": ("hct_cli.run.api", "perform"),
    "aperform": ("hct_cli.run.api", "aperform"),
    "Score": ("hct_cli.score", "Score"),
    "lint": ("hct_cli.program.lint", "lint_path"),
    "lint_path": ("hct_cli.program.lint", "lint_path"),
    "load": ("hct_cli.program.lint", "load_score"),
    "load_score": ("hct_cli.program.lint", "load_score"),
}


def __getattr__(name: str) -> Any:
    found = _LAZY.get(name)
    if found is None:
        raise AttributeError(f"module 'hct_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(found[0]), found[1])
