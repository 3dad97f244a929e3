"""The plain view of a run: a live line of progress on stderr and a summary table at the end."""

from __future__ import annotations

import sys
from typing import IO, Any

from hct_cli.engine.events import Event
from hct_cli.engine.result import RunResult

__all__ = ["PlainLog", "summary_table"]


#: Decisions a person wants to see as they happen: retries, fallbacks, the governor's steps.
_DECISIONS = frozenset({"retry", "fallback", "fallback_skipped", "step_down", "boost", "budget_stop"})
_SHOWN = frozenset({"issue", "cue", "fail", "skip", "run_end"}) | _DECISIONS


class PlainLog:
    """Observer: one line per signal when not on a terminal, a live status line when on one."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.running: set[str] = set()
        self.cost = 0.0
        self.live = self.stream.isatty()

    def __call__(self, event: Event) -> None:
        if event.kind == "issue" and event.station:
            self.running.add(event.station)
        elif event.kind in ("cue", "fail", "skip") and event.station:
            self.running.discard(event.station)
            self.done += 1
            self.cost += float(event.data.get("cost_usd", 0.0))
        if self.live:
            self._status(event)
        elif event.kind in _SHOWN:
            self.stream.write(self._line(event) + "\n")

    def _line(self, event: Event) -> str:
        where = f"{event.station}@{event.version}" if event.station else ""
        detail = ""
        if event.kind == "issue":
            detail = f"{event.data.get('tier') or '-'} {event.data.get('model')}"
        elif event.kind == "cue":
            detail = f"${float(event.data.get('cost_usd', 0.0)):.4f}"
        elif event.kind in ("fail", "skip"):
            detail = str(event.data.get("error") or event.data.get("reason", ""))
        elif event.kind in _DECISIONS:
            target = event.data.get("model") or ""
            detail = f"{event.data.get('tier') or ''} {target}: {event.data.get('reason', '')}".strip()
        elif event.kind == "run_end":
            detail = f"{event.data.get('status')} ${float(event.data.get('cost_usd', 0.0)):.4f}"
        return f"{event.time_s:9.3f}s  {event.kind:<9} {where:<28} {detail}".rstrip()

    def _status(self, event: Event) -> None:
        if event.kind in ("fail", "skip") or event.kind in _DECISIONS:
            self.stream.write("\r\x1b[K" + self._line(event) + "\n")
        running = ", ".join(sorted(self.running)[:4]) + (" ..." if len(self.running) > 4 else "")
        line = f"{event.time_s:7.2f}s  {self.done}/{self.total} done  ${self.cost:.4f}  running: {running or '-'}"
        self.stream.write("\r\x1b[K" + line[:150])
        if event.kind == "run_end":
            self.stream.write("\n")
        self.stream.flush()


def summary_table(result: RunResult) -> Any:
    """A rich table of every agent, and the run's totals in its caption."""
    from rich.table import Table

    table = Table(title=f"run {result.run_id}: {result.status}", title_justify="left")
    for column in ("agent", "status", "tier", "model", "v", "tokens in/out", "cost", "start", "end"):
        table.add_column(column, justify="right" if column in ("v", "cost", "start", "end") else "left")
    for name, r in result.agents.items():
        table.add_row(
            name,
            r.status,
            r.tier or "-",
            r.model or "-",
            str(r.version),
            f"{r.prompt_tokens}/{r.completion_tokens}",
            f"${r.cost_usd:.4f}",
            "-" if r.started_s is None else f"{r.started_s:.3f}",
            "-" if r.finished_s is None else f"{r.finished_s:.3f}",
        )
    table.caption = (
        f"makespan {result.makespan_s:.3f} s (critical path {result.critical_path_s:.3f} s)  "
        f"cost ${result.cost_usd:.4f} vs ${result.frontier_cost_usd:.4f} all-frontier "
        f"(saving {result.savings:.1%})  stale reads {result.stale_reads}"
    )
    return table
