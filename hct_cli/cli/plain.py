"""The plain view of a run: a live line of progress on stderr and a summary table at the end."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from hct_cli.events import Event
from hct_cli.tui.tools import TOOL_KINDS, size_text
from hct_cli.tui.words import describe

__all__ = ["PlainLog", "outputs_text", "summary_table", "tool_table"]


#: Decisions a person wants to see as they happen: retries, fallbacks, the governor's steps.
_DECISIONS = frozenset(
    {
        "retry",
        "fallback",
        "fallback_skipped",
        "step_down",
        "boost",
        "budget_stop",
        "gate",
        "fermata",
        "squash",
        "caesura",
        "reclaim",
        "hand_back",
        "interrupt",
        "listen",
        "page",
        "refused",
        "warm_up_failed",
        "replay",
        "stale_read",
    }
)
#: Decisions worded by the conductor's :func:`describe`, so the two views say the same.
_DESCRIBED = frozenset(
    {"reclaim", "hand_back", "interrupt", "listen", "page", "refused", "warm_up_failed", "replay", "stale_read"}
)
#: Seconds between two redraws of the live status line.
_REDRAW_S = 0.04
_SHOWN = frozenset({"issue", "cue", "fail", "skip", "tacet", "downbeat", "vamp", "run_end"}) | _DECISIONS | TOOL_KINDS


class PlainLog:
    """Observer: one line per signal when not on a terminal, a live status line when on one."""

    def __init__(self, total: int, stream: IO[str] | None = None, *, live: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.running: set[str] = set()
        self.cost = 0.0
        self.live = self.stream.isatty() if live is None else live  # one status line, redrawn
        self.run_id = ""
        self._drawn = 0.0

    def __call__(self, event: Event) -> None:
        if event.kind == "run_start":
            self.run_id = str(event.data.get("run_id", ""))
        if event.kind == "issue" and event.station:
            self.running.add(event.station)
        elif event.kind in ("cue", "fail", "skip") and event.station:
            self.running.discard(event.station)
            self.done += 1
            self.cost += float(event.data.get("cost_usd", 0.0))
        if self.live:
            self._status(event)
        elif event.kind in _SHOWN and not (event.kind == "fermata" and "key" in event.data):
            self.stream.write(self._line(event) + "\n")  # (a read for ownership is not news)

    def _line(self, event: Event) -> str:
        where = f"{event.station}@{event.version}" if event.station else ""
        detail = ""
        if event.kind == "issue":
            detail = f"{event.data.get('tier') or '-'} {event.data.get('model')}"
        elif event.kind == "cue":
            detail = f"${float(event.data.get('cost_usd', 0.0)):.4f}"
        elif event.kind in ("fail", "skip"):
            detail = str(event.data.get("error") or event.data.get("reason", ""))
        elif event.kind in ("gate", "tacet", "vamp", "caesura"):
            passed = event.data.get("passed")
            verdict = "" if passed is None else "passed: " if passed else "failed: "
            detail = f"{verdict}{event.data.get('reason', '')}"
            writes = event.data.get("writes") or [] if event.kind == "caesura" else []
            if writes:  # what a rollback cannot undo, each named
                named = ", ".join(f"{w.get('agent')}@{w.get('version')} {w.get('tool')}" for w in writes)
                detail += f"; not undone, written after the checkpoint: {named}"
        elif event.kind in TOOL_KINDS:
            detail = describe(event)  # step, call, tool, effects, duration, size, error: never the answer
        elif event.kind == "squash":
            detail = f"fired on {event.data.get('on')}, which did not commit"
        elif event.kind == "downbeat":
            detail = f"checkpoint {event.data.get('checkpoint')}"
        elif event.kind == "fermata":
            if "key" in event.data:
                detail = f"read for ownership of {event.data['key']}"
            elif event.data.get("hold") == "approval":
                detail = f"waits for a person: hct approve {self.run_id} {event.station} (or hct reject)"
            else:
                detail = "held until its gate decides"
        elif event.kind in _DESCRIBED:
            detail = describe(event)  # worded as the conductor words it
        elif event.kind in _DECISIONS:
            target = event.data.get("model") or ""
            detail = f"{event.data.get('tier') or ''} {target}: {event.data.get('reason', '')}".strip()
        elif event.kind == "run_end":
            detail = f"{event.data.get('status')} ${float(event.data.get('cost_usd', 0.0)):.4f}"
        return f"{event.time_s:9.3f}s  {event.kind:<9} {where:<28} {detail}".rstrip()

    def _status(self, event: Event) -> None:
        news = event.kind in ("fail", "skip", "tool_hold") or event.kind in _DECISIONS
        news = news or (event.kind == "tool_result" and not event.data.get("ok", True))
        if news:
            self.stream.write("\r\x1b[K" + self._line(event) + "\n")
        now = time.monotonic()
        if not news and event.kind != "run_end" and now - self._drawn < _REDRAW_S:
            return  # the status line is redrawn a few dozen times a second at most
        self._drawn = now
        running = ", ".join(sorted(self.running)[:4]) + (" ..." if len(self.running) > 4 else "")
        line = f"{event.time_s:7.2f}s  {self.done}/{self.total} done  ${self.cost:.4f}  running: {running or '-'}"
        self.stream.write("\r\x1b[K" + line[:150])
        if event.kind == "run_end":
            self.stream.write("\n")
        self.stream.flush()


#: Rows the summary shows after a run; ``hct show RUN`` lists every agent.
SUMMARY_ROWS = 50


def summary_table(data: Mapping[str, Any], limit: int | None = None) -> Any:
    """A rich table of the agents (the first ``limit``; every one by default), and the run's totals
    in its caption (from ``perform --json``'s object)."""
    from rich.table import Table

    table = Table(title=f"run {data['run_id']}: {data['status']}", title_justify="left")
    for column in ("agent", "status", "tier", "model", "v", "tokens in/out", "cost", "start", "end"):
        # On a narrow screen cells fold onto more lines rather than lose their ends: two names cut
        # to the same prefix look like one agent twice.
        table.add_column(
            column, justify="right" if column in ("v", "cost", "start", "end") else "left", overflow="fold"
        )
    agents = data.get("agents", {})
    for shown, (name, r) in enumerate(agents.items()):
        if limit is not None and shown == limit:
            rest = len(agents) - limit
            table.add_row(f"… {rest:,} more", "", "", "", "", "", "", "", "", style="dim")
            break
        started, finished = r.get("started_s"), r.get("finished_s")
        table.add_row(
            name,
            r.get("status", "-"),
            r.get("tier") or "-",
            r.get("model") or "-",
            str(r.get("version", 0)),
            f"{r.get('prompt_tokens', 0)}/{r.get('completion_tokens', 0)}",
            f"${float(r.get('cost_usd', 0.0)):.4f}",
            "-" if started is None else f"{started:.3f}",
            "-" if finished is None else f"{finished:.3f}",
        )
    hidden = f"`hct show {data['run_id']}` lists every agent\n" if limit is not None and len(agents) > limit else ""
    figures = (_timing(data), _spend(data), f"stale reads {data['stale_reads']}" if "stale_reads" in data else "")
    caption = hidden + "  ".join(figure for figure in figures if figure)
    extras = []
    if data.get("speculated") or data.get("squashes"):
        extras.append(
            f"speculation: {data.get('speculated', 0)} hits, {data.get('squashes', 0)} squashed "
            f"(${float(data.get('squashed_cost_usd', 0.0)):.4f})"
        )
    if "paid_calls" in data:  # the journal's count, over every segment
        extras.append(
            f"calls: {data['paid_calls']} paid, {data.get('cached_calls', 0)} cached, "
            f"{data.get('squashed_calls', 0)} squashed, {data.get('lost_calls', 0)} lost to a crash or an interruption"
        )
    elif data.get("cached_calls"):
        extras.append(f"{data['cached_calls']} calls from the cache")
    caesura = data.get("caesura")
    if caesura:
        extras.append(
            f"caesura at {caesura['agent'] or 'the conductor'}: rolled back to checkpoint {caesura['checkpoint']}"
        )
    table.caption = caption + ("\n" + "  ".join(extras) if extras else "")
    return table


#: How ``hct show`` words a journaled tool call's end (``hct_cli.store.runs.tool_calls_of``'s states).
_TOOL_STATES = {
    "ok": "ok",
    "error": "error",
    "sent": "sent, no result journaled",
    "held": "held, no result journaled",
    "refused": "refused",
}


def tool_table(data: Mapping[str, Any]) -> Any:
    """A rich table of a run's journaled tool calls, agent by agent (``hct show``'s
    ``tool_calls``), and in its caption the writes a caesura could not undo."""
    from rich.table import Table

    table = Table(title="tool calls", title_justify="left")
    for column in ("agent", "v", "step", "#", "tool", "effects", "result", "time", "size", "note"):
        table.add_column(
            column, justify="right" if column in ("v", "step", "#", "time", "size") else "left", overflow="fold"
        )
    for call in data.get("tool_calls") or []:  # agent by agent, each agent's in the order sent
        duration, size = call.get("duration_s"), call.get("size")
        notes = [note for note in ("speculative", "cached", "restored") if call.get(note)]
        if call.get("worker"):
            notes.append(f"on {call['worker']}")
        if call.get("error"):
            notes.append(str(call["error"]))
        if call.get("state") == "sent" and call.get("effects") == "write":
            notes.append("in doubt: the write may have been made")
        table.add_row(
            str(call.get("agent")),
            str(call.get("version", 0)),
            str(call.get("step", "-")),
            str(call.get("index", "-")),
            str(call.get("tool") or "-"),
            str(call.get("effects") or "-"),
            _TOOL_STATES.get(str(call.get("state")), str(call.get("state"))),
            "-" if duration is None else f"{float(duration):.3f}s",
            "-" if size is None else size_text(int(size)),
            "; ".join(notes),
        )
    writes = (data.get("caesura") or {}).get("writes") or []
    if writes:
        lines = [
            f"{w.get('agent')}@{w.get('version')} {w.get('tool')} {json.dumps(w.get('arguments'), default=str)}"
            for w in writes
        ]
        table.caption = "written after the caesura's checkpoint, not undone by the rollback:\n" + "\n".join(lines)
    return table


def outputs_text(data: Mapping[str, Any]) -> str:
    """Every agent's output and the final shared state of a run (``perform --json``'s object), as
    plain text to read or to pipe on: what ``hct show RUN --outputs`` prints."""
    parts: list[str] = []
    for name, agent in (data.get("agents") or {}).items():
        model = f", {agent['model']}" if agent.get("model") else ""
        parts.append(f"== {name} ({agent.get('status', '-')}{model}, v{agent.get('version', 0)}) ==")
        output = agent.get("output")
        parts.append("(no output)" if output is None else _plain(output))
        if agent.get("error"):
            parts.append(f"error: {agent['error']}")
        parts.append("")
    state = data.get("state")
    parts.append("== state ==")
    if state is None:
        parts.append("(not journaled: the run did not finish)")
    for key, value in (state or {}).items():
        parts.append(f"{key}:")
        parts.append(_indent(_plain(value), "  "))
    return "\n".join(parts) + "\n"


def _plain(value: Any) -> str:
    """Text as itself, a list as its items, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        return "\n".join("- " + _indent(_plain(item), "  ")[2:] for item in value)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines() or [""])


def _timing(data: Mapping[str, Any]) -> str:
    """Makespan and critical path, both of this segment (docs/figures.md)."""
    if "makespan_s" not in data:
        return ""  # a run that never ended (``hct show`` of a crash): no figure is better than a 0
    makespan = f"makespan {float(data.get('makespan_s', 0.0)):.3f} s"
    critical = float(data.get("critical_path_s", 0.0))
    journaled = int(data.get("segment", data.get("segments", 1)) or 1) > 1
    if critical == 0 and (data.get("cached_calls") or journaled):
        # A critical path of 0 is exact, yet reads like a broken timer: say why there is none.
        source = " or ".join(
            s for s, used in (("the cache", data.get("cached_calls")), ("the journal", journaled)) if used
        )
        return f"{makespan} (no call to wait for: every answer came from {source})"
    return f"{makespan} (critical path {critical:.3f} s)"


def _spend(data: Mapping[str, Any]) -> str:
    """What the run paid against the all-frontier counterfactual of the same paid calls."""
    cost, frontier = float(data.get("cost_usd", 0.0)), float(data.get("frontier_cost_usd", 0.0))
    if "frontier_cost_usd" not in data:
        return f"cost ${cost:.4f}"  # a run that never ended was never priced on the frontier
    cached = int(data.get("cached_calls") or 0)
    if cost == 0 and frontier == 0 and cached and not data.get("paid_calls"):
        return f"cost $0.0000: all {cached} calls served from the cache"
    return f"cost ${cost:.4f} vs ${frontier:.4f} all-frontier (saving {float(data.get('savings', 0.0)):.1%})"
