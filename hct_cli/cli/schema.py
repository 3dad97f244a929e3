"""``hct schema``: print the score JSON Schema."""

from __future__ import annotations

import sys

from hct_cli.score.validate import schema_text

__all__ = ["print_schema"]


def print_schema() -> int:
    sys.stdout.write(schema_text())
    return 0
