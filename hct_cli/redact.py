"""Secrets never leave hct in what it writes or shows.

A secret is the value of an environment variable whose name ends in ``_KEY``, ``_TOKEN``,
``_SECRET`` or ``_PASSWORD`` (every provider's API key among them), when the value is 8
characters or more. :class:`Redactor` replaces each occurrence by ``[redacted NAME]``. The engine
redacts every call's result and every event before anyone observes them, so the journal, the
TUI, the plain log, traces and ``--json`` only ever hold the redacted text; the CLI redacts error
messages and the journaled run configuration as well.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["SECRET_SUFFIXES", "Redactor"]

SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")
_MIN_LENGTH = 8


class Redactor:
    """Replaces known secret values in text and in JSON-like data."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        found = sorted(((v, n) for n, v in secrets.items() if len(v) >= _MIN_LENGTH), key=lambda p: -len(p[0]))
        self._names = {value: name for value, name in found}
        self._pattern = re.compile("|".join(re.escape(value) for value, _ in found)) if found else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        env = os.environ if environ is None else environ
        return cls({name: value for name, value in env.items() if name.upper().endswith(SECRET_SUFFIXES)})

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: f"[redacted {self._names[m.group(0)]}]", text)

    def data(self, value: Any) -> Any:
        """``value`` with every string in it redacted (dicts and lists are copied when changed)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(item) for item in value]
        return value
