"""The console the commands print their tables on."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["table_console"]

#: Off a terminal, a width no table reaches: each takes its natural width.
_UNBOUNDED = 100_000


def table_console() -> Console:
    """A rich console for stdout; off a terminal (piped, redirected, in CI) rich would assume 80
    columns and cut names to fit, so unless ``COLUMNS`` says otherwise tables keep their width."""
    from rich.console import Console

    printer = Console()
    if printer.is_terminal or os.environ.get("COLUMNS", "").isdigit():
        return printer
    return Console(width=_UNBOUNDED)
