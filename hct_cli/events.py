"""Events the engine emits; the plain view, the TUI and the journal observe them.

A foundation, not the engine's: the journal (store/), the views (cli/, tui/) and the engine all
speak this vocabulary, and none of them need import another to do so.

Kinds, by what they tell:

* the run: ``run_start``, ``run_end``;
* a station: ``ready`` (it has every operand), ``issue`` (sent to a unit; ``restored`` when a
  resume answers it from the journal), ``result`` (a call's result arrived: what the journal
  keeps; ``purpose`` is ``judge`` for a gate's judge), ``cue`` (a result committed and
  broadcast), ``fail``, ``skip`` (never runs: an upstream station failed, or the run stopped);
* signals: ``fermata`` (a result held for a gate that takes time; the directory's read for
  ownership uses the same kind, with a ``key``), ``gate`` (its verdict), ``vamp`` (another pass),
  ``tacet``, ``downbeat`` (a checkpoint), ``caesura`` (no station when the conductor called it),
  ``speculate`` (a dependent fired on a held result), ``squash`` (that result did not commit);
* coherence: ``mesi``, ``stale_read``, ``replay``, ``hold``;
* the conductor's hands: ``pause``, ``resume`` (issuing stops and starts again);
* routing: ``step_down``, ``boost``, ``budget_stop``, and a provider's ``retry``, ``fallback``,
  ``fallback_skipped``;
* tools (an agent's rounds of model and tool calls): ``round`` (a model round that asked for tools:
  ``step``, the round's tokens, cost and latency, its ``tool_calls``; the call's ``result`` has the
  totals of every round), ``tool_call`` (journaled before the call is sent: ``step``, ``index``,
  ``tool`` as ``server.tool``, ``effects``, redacted ``arguments``, ``digest``, ``speculative``),
  ``tool_hold`` (a speculative agent's write waits until its speculation is confirmed),
  ``tool_result`` (``ok``, ``duration_s``, ``size``, ``error``, the redacted ``text``, ``cached``
  from the run's read cache, ``restored`` from the journal on a resume), ``refused`` with a
  ``tool``, ``step`` and ``index`` (a tool outside the agent's list; without them, a refusal of
  something else, with its ``reason``); a ``caesura``'s ``writes`` lists the write calls made after
  its checkpoint, which the rollback cannot undo;
* a resume: ``replay_order`` (the journaled results were all delivered in their first order,
  ``drained``, or the run went another way, ``diverged``; ``offset_s`` places the segment's clock
  on the run's timeline).
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
