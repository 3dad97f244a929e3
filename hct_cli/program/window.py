"""What one call may hold: the reference frame as text, a token estimate, the model's window.

These are static figures of a compiled score: ``hct lint`` uses them to say that a prompt can
never fit its model, the engine's L1 paging
(:mod:`hct_cli.engine.paging`) fits every call's material to the :class:`Window`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hct_cli.jsonio import dumps
from hct_cli.models import model_info
from hct_cli.score.model import DYNAMICS

__all__ = ["Window", "estimate_tokens", "frame_text", "window_for"]


def frame_text(frame: Mapping[str, Any]) -> str:
    """The reference frame (L0) as the system message of every call."""
    if not frame:
        return ""
    lines = ["Reference frame (immutable; applies to every answer):"]
    for key, value in frame.items():
        shown = value if isinstance(value, str) else dumps(value, ensure_ascii=False)
        lines.append(f"- {key}: {shown}")
    return "\n".join(lines)


def estimate_tokens(text: str) -> int:
    """About four characters a token: the simulated provider's own measure."""
    return (len(text) + 3) // 4


@dataclass(frozen=True, slots=True)
class Window:
    """The tokens one call's messages may take, and where that figure comes from."""

    tokens: int
    model: str
    full: int  # the model's whole input window
    dynamics: str

    def describe(self) -> str:
        share = DYNAMICS[self.dynamics]
        if share >= 1.0:
            return f"the {self.tokens:,}-token input window of {self.model}"
        return f"{self.tokens:,} tokens ({share:g} x the {self.full:,}-token window of {self.model} at {self.dynamics})"


def window_for(model: str, dynamics: str, max_tokens: int, context_window: int | None = None) -> Window | None:
    """The budget of a call to ``model``: its input window (a tier's ``context_window`` less the
    answer's ``max_tokens``, else the price map's) times the dynamics multiplier, capped by the
    window. None when the window is unknown: nothing is paged."""
    if context_window is not None:
        full = max(0, context_window - max_tokens)
    else:
        info = model_info(model)
        if info is None or not info.max_input_tokens:
            return None
        full = int(info.max_input_tokens)
    return Window(min(full, int(full * DYNAMICS[dynamics])), model, full, dynamics)
