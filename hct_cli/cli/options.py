"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["JsonOption"]

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]
