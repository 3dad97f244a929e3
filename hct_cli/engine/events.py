"""Events the engine emits; the plain view, the TUI and the journal observe them.

Kinds: ``run_start``, ``ready`` (a station has every operand), ``issue`` (sent to a unit),
``cue`` (a result committed and broadcast), ``fail``, ``skip`` (never runs because an upstream
station failed), ``run_end``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Observer"]


@dataclass(slots=True)
class Event:
    kind: str
    time_s: float
    station: str | None = None
    version: int = 0
    data: Mapping[str, Any] = field(default_factory=dict)


Observer = Callable[[Event], None]
