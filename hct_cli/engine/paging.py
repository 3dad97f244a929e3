"""L1, the working context of one call.

A call's prompt is the reference frame (L0, never paged out), then the agent's prompt rendered
with its material: the cue operands (L2), inputs and shared keys (L3) it refers to and, for a
vamp, its previous output. :func:`assemble` fits it to a :class:`~hct_cli.program.window.Window`, the
routed model's input window times the dynamics multiplier. Over the window, material is paged out in order
(lowest priority first, then least recently produced), each piece replaced by a visible marker
saying what was cut and how much; the last piece paged keeps as much of its head as fits. When
the frame and the prompt alone do not fit, :class:`~hct_cli.errors.ContextError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hct_cli.errors import ContextError
from hct_cli.program.window import Window
from hct_cli.score.template import Marker

__all__ = [
    "Assembly",
    "Count",
    "Cut",
    "Layout",
    "Piece",
    "assemble",
    "fits_surely",
]


#: Counts the tokens of a text for one model.
Count = Callable[[str], int]
#: Tokens a chat message takes beyond its text, and those priming the reply (OpenAI's figures).
_PER_MESSAGE = 4
_PER_REPLY = 3
#: A piece is cut to its head only when at least this much of it can stay; otherwise it goes whole.
_MIN_HEAD = 32


def _bound(text: str) -> int:
    """An upper bound on the tokens of ``text`` for any tokenizer: its UTF-8 bytes."""
    return len(text) if text.isascii() else len(text.encode())


class Layout(NamedTuple):
    """A call's user message, stable part first: the material shared with other calls, then the
    agent's own instructions (the reference frame is the system message before both)."""

    shared: str
    prompt: str

    @property
    def user(self) -> str:
        return f"{self.shared}\n\n{self.prompt}" if self.shared else self.prompt


def fits_surely(system: str, layout: Layout, window: Window) -> bool:
    """True when the messages fit ``window`` whatever the tokenizer: no need to count."""
    return _bound(system) + _bound(layout.shared) + _bound(layout.prompt) + 2 + 2 * _PER_MESSAGE + _PER_REPLY <= (
        window.tokens
    )


@dataclass(frozen=True, slots=True)
class Piece:
    """Material a prompt carries that may be paged out."""

    ref: str  # "cues.parse", "inputs.diff", "state.findings", "previous output"
    text: str  # as the prompt shows it
    rank: int = 0  # the agent's priority for it: higher stays longer
    produced: int = 0  # commits made before it was produced: the least recent goes first


@dataclass(frozen=True, slots=True)
class Cut:
    """What paging took from one piece."""

    ref: str
    tokens: int  # cut
    of: int  # the piece's tokens before

    def to_data(self) -> dict[str, object]:
        return {"ref": self.ref, "tokens": self.tokens, "of": self.of}


@dataclass(frozen=True, slots=True)
class Assembly:
    layout: Layout
    tokens: int
    cuts: tuple[Cut, ...] = ()


def _marker(ref: str, cut: int, of: int, window: Window, *, rest: bool) -> str:
    what = f"the rest of {ref}" if rest else ref
    return f"[paged out: {what}, {cut:,} of {of:,} tokens, to fit {window.describe()}]"


def _head(text: str, tokens: int, count: Count) -> str:
    """The longest start of ``text``, ended at a line or word, of at most ``tokens`` tokens."""
    total = max(1, count(text))
    end = min(len(text), len(text) * tokens // total)
    while end > 0:
        head = text[:end]
        for stop in ("\n", " "):
            cut = head.rfind(stop)
            if cut > end // 2:
                head = head[:cut]
                break
        if count(head) <= tokens:
            return head
        end = end * 9 // 10
    return ""


def _measure(system: str, layout: Layout, count: Count) -> int:
    messages = (count(system) + _PER_MESSAGE if system else 0) + count(layout.user) + _PER_MESSAGE
    return messages + _PER_REPLY


def assemble(
    system: str,
    compose: Callable[[Mapping[str, str]], Layout],
    pieces: Sequence[Piece],
    window: Window,
    count: Count,
) -> Assembly:
    """Fit a call's messages to ``window``.

    ``compose(replacements)`` lays out the call with each piece named in ``replacements``
    (by ``ref``) shown as the text given instead of its value. Raises
    :class:`~hct_cli.errors.ContextError` when the frame and the prompt do not fit even with
    every piece paged out.
    """
    layout = compose({})
    used = _measure(system, layout, count)
    if used <= window.tokens:
        return Assembly(layout, used)
    replacements: dict[str, str] = {}
    cuts: list[Cut] = []
    for piece in sorted(pieces, key=lambda p: (p.rank, p.produced)):
        of = count(piece.text)
        replacements[piece.ref] = Marker(_marker(piece.ref, of, of, window, rest=False))
        layout = compose(replacements)
        used = _measure(system, layout, count)
        if used > window.tokens:
            cuts.append(Cut(piece.ref, of, of))
            continue
        # Paging the whole piece was enough: give back as much of its head as fits.
        room = window.tokens - used - 2 * _PER_MESSAGE
        while room >= _MIN_HEAD:
            head = _head(piece.text, room, count)
            kept = count(head) if head else 0
            if kept < _MIN_HEAD:
                break
            marker = _marker(piece.ref, of - kept, of, window, rest=True)
            partial = {**replacements, piece.ref: Marker(f"{head}\n{marker}")}
            candidate = compose(partial)
            measured = _measure(system, candidate, count)
            if measured <= window.tokens:
                cuts.append(Cut(piece.ref, of - kept, of))
                return Assembly(candidate, measured, tuple(cuts))
            room -= max(_MIN_HEAD // 2, measured - window.tokens)
        cuts.append(Cut(piece.ref, of, of))
        return Assembly(layout, used, tuple(cuts))
    needed = _measure(system, layout, count)
    raise ContextError(
        f"the reference frame and the prompt need {needed:,} tokens with every cue, input and state value "
        f"paged out; the call may take {window.describe()}",
        hint="Shorten the prompt or the reference frame, raise the agent's dynamics, or route it to a model "
        "with a larger window.",
    )
