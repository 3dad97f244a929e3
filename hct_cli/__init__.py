"""hct: run teams of LLM agents from a declarative YAML score.

The public API is importable from here; heavy parts load only when first used, so
``import hct_cli`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "HctError",
    "Score",
    "ScoreError",
    "__version__",
    "lint_path",
    "load_score",
]

if TYPE_CHECKING:
    from hct_cli.errors import HctError, ScoreError
    from hct_cli.program.lint import lint_path, load_score
    from hct_cli.score import Score

_LAZY = {
    "HctError": "hct_cli.errors",
    "ScoreError": "hct_cli.errors",
    "Score": "hct_cli.score",
    "lint_path": "hct_cli.program.lint",
    "load_score": "hct_cli.program.lint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hct_cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
