"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

__all__ = ["JsonOption", "path_argument"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]


def path_argument(help: str) -> Any:
    """A path argument that hct opens itself. Click's own readability check would make an unreadable
    file a usage error (exit 2, no JSON); hct reports it as it reports a missing file."""
    return typer.Argument(help=help, show_default=False, readable=False)
