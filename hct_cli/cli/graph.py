"""``hct graph``: draw a score's cue graph."""

from __future__ import annotations

import sys
from pathlib import Path

from hct_cli.compile import compile_score
from hct_cli.errors import UsageError
from hct_cli.graph import FORMATS, render_graph
from hct_cli.score import load_score

__all__ = ["graph"]


def graph(path: Path, fmt: str) -> int:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}", hint=f"Use --format {' or '.join(FORMATS)}.")
    sys.stdout.write(render_graph(compile_score(load_score(path)), fmt) + "\n")
    return 0
