"""An agent's tool calls as the views show them, and their words.

The conductor keeps one :class:`ToolRun` per call (or refusal) of an agent: its timeline lane
draws them all, its agents panel the latest step's. :func:`tool_words` says a tool event in a
few words, so that the conductor's signals and the plain log word it the same; never the
answer's text, which can be pages long.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TOOL_KINDS", "ToolRun", "size_text", "tool_words"]

#: The engine's events about tool calls (a ``refused`` with a ``tool`` is one too).
TOOL_KINDS = frozenset({"tool_call", "tool_hold", "tool_result"})


@dataclass(slots=True)
class ToolRun:
    """One tool call of an agent: sent, held, answered (``done`` or ``error``) or ``refused``."""

    version: int
    step: int
    index: int
    tool: str
    effects: str
    start: float
    end: float | None = None
    state: str = "running"  # running, held, done, error, refused
    size: int = 0
    error: str = ""
    cached: bool = False
    restored: bool = False

    def duration(self, now: float) -> float:
        return (self.end if self.end is not None else now) - self.start

    def flags(self) -> str:
        return "cached" if self.cached else "restored" if self.restored else ""


def size_text(size: int) -> str:
    """A byte count as a person reads it."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def _where(data: Mapping[str, Any]) -> str:
    return f"step {data.get('step', '?')} #{data.get('index', '?')} {data.get('tool', '?')}"


def tool_words(kind: str, data: Mapping[str, Any]) -> str:
    """A tool event (or a refused tool) in a few words: step, call, tool, effects, duration, size, error."""
    if kind == "tool_call":
        speculative = " (speculative)" if data.get("speculative") else ""
        return f"{_where(data)} {data.get('effects', '')}{speculative}".rstrip()
    if kind == "tool_hold":
        return f"{_where(data)} write held until the speculation is confirmed"
    if kind == "tool_result":
        how = "ok" if data.get("ok", True) else f"error: {data.get('error') or 'failed'}"
        source = " cached" if data.get("cached") else " restored" if data.get("restored") else ""
        figures = f"{float(data.get('duration_s') or 0.0):.3f}s {size_text(int(data.get('size') or 0))}"
        return f"{_where(data)} {data.get('effects', '')} {figures}{source} {how}"
    if kind == "refused":
        return f"{_where(data)} refused: {data.get('reason', 'not in its tools list')}"
    return ""
