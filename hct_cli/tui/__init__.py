"""The conductor: a live view of a run (``hct perform`` on a terminal) and of a journaled one
(``hct replay``). An observer of engine events: the engine never imports it.

This package's own module is light (no Textual import): commands ask :func:`on_a_terminal`
before they load the app.
"""

from __future__ import annotations

import sys

__all__ = ["on_a_terminal"]


def on_a_terminal() -> bool:
    """Whether the conductor can take the screen: it reads keys from stdin and draws on stderr
    (Textual's driver), and stdout must be the same terminal for the summary after it."""
    return all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stdout, sys.stderr))
