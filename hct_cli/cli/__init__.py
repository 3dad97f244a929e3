"""The ``hct`` command line: typer wiring in :mod:`.app`, one plain function per command."""

from __future__ import annotations

from hct_cli.cli.app import app, main

__all__ = ["app", "main"]
