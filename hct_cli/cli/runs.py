"""``hct runs`` and ``hct show``: the run history and one run in full, from the journal."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from hct_cli.errors import UsageError
from hct_cli.jsonio import dumps
from hct_cli.redact import Redactor

__all__ = ["runs_command", "show_command"]


def runs_command(*, as_json: bool, limit: int | None) -> int:
    from hct_cli.store.home import connect
    from hct_cli.store.runs import list_runs

    runs = list_runs(connect(), limit)
    if as_json:
        sys.stdout.write(dumps([run.to_json() for run in runs], indent=2) + "\n")
        return 0
    if not runs:
        sys.stderr.write("no runs yet: start one with `hct perform SCORE --simulate`\n")
        return 0
    from rich.table import Table

    from hct_cli.cli.console import table_console

    table = Table(title="runs, newest first", title_justify="left")
    for column in ("run", "score", "status", "started", "cost"):
        table.add_column(column, justify="right" if column == "cost" else "left", overflow="fold")  # never cut
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at))
        table.add_row(run.run_id, run.score, run.status, started, f"${run.cost_usd:.4f}")
    table_console().print(table)
    return 0


def _show_data(run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """The object ``hct show --json`` prints, the run's events, and its score's name."""
    from hct_cli.store.home import connect
    from hct_cli.store.runs import caesura_writes, call_counts, calls_of, events_of, find_run, tool_calls_of

    db = connect()
    run = find_run(db, run_id)
    events = list(events_of(db, run.run_id))
    data = dict(run.result) if run.result is not None else _from_events(run.run_id, run.status, events)
    data["status"] = run.status
    calls = calls_of(db, run.run_id)
    data["calls"] = [
        {key: call[key] for key in ("agent", "version", "model", "cost_usd", "cached", "worker")}
        | ({"purpose": call["purpose"]} if call["purpose"] != "call" else {})
        for call in calls
    ]
    data.update(call_counts(db, run.run_id))
    data["segments"] = run.segments
    # Tool calls as the journal holds them, every segment's: what a resume will not send again,
    # and the calls in doubt (sent, no result journaled).
    tools = tool_calls_of(events)
    if tools:  # left out when there are none, as perform --json leaves it out
        data["tool_calls"] = [{"agent": agent, **call} for agent, calls in tools.items() for call in calls]
    if run.result is None:
        for agent, calls in tools.items():
            if agent in data["agents"]:
                data["agents"][agent]["tool_calls"] = [{k: call[k] for k in _RECORD_KEYS} for call in calls]
    caesura = data.get("caesura")
    if isinstance(caesura, dict) and "writes" not in caesura:
        writes = caesura_writes(events)
        if writes:  # left out when there are none, as perform --json leaves them out
            data["caesura"] = {**caesura, "writes": writes}
    return data, events, run.score


#: A tool call's keys in an agent's record (``perform --json``'s ``agents.NAME.tool_calls``).
_RECORD_KEYS = (
    "step",
    "index",
    "tool",
    "effects",
    "ok",
    "duration_s",
    "size",
    "error",
    "cached",
    "restored",
    "refused",
    "worker",
)


def _from_events(run_id: str, status: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """What the journal says of a run that never finished (it crashed, or is still running)."""
    agents: dict[str, dict[str, Any]] = {}
    cost = 0.0
    for event in events:
        name = event["station"]
        if name is None:
            continue
        agent = agents.setdefault(name, {"status": "waiting", "version": 0, "cost_usd": 0.0, "output": None})
        kind, data = event["kind"], event["data"]
        if kind == "issue":
            agent.update(status="running", version=event["version"], model=data.get("model"), tier=data.get("tier"))
        elif kind == "result":
            agent["cost_usd"] += float(data.get("cost_usd", 0.0))
            cost += float(data.get("cost_usd", 0.0))
            if data.get("purpose", "call") == "call":
                agent["output"] = data.get("output")
        elif kind in ("cue", "fail", "skip", "tacet"):
            agent["status"] = {"cue": "done", "fail": "failed", "skip": "skipped", "tacet": "tacet"}[kind]
    return {"run_id": run_id, "status": status, "cost_usd": round(cost, 8), "agents": agents}


def show_command(run_id: str, *, as_json: bool, trace: Path | None, outputs: bool = False) -> int:
    data, events, score = _show_data(run_id)
    if trace is not None:
        from hct_cli.store.trace import chrome_trace

        try:
            trace.write_text(dumps(chrome_trace(events, run_id=data["run_id"], score=score)))
        except OSError as exc:
            raise UsageError(f"cannot write {trace}: {exc.strerror or exc}", hint="Choose a writable path.") from exc
        sys.stderr.write(f"wrote {trace}: open it at https://ui.perfetto.dev\n")
    if as_json:
        sys.stdout.write(dumps(Redactor.from_environ().data(data), indent=2) + "\n")
        return 0
    from hct_cli.cli.console import table_console
    from hct_cli.cli.plain import outputs_text, summary_table, tool_table

    if outputs:
        sys.stdout.write(outputs_text(Redactor.from_environ().data(data)))
        return 0
    console = table_console()
    console.print(summary_table(data))
    if data.get("tool_calls") or (data.get("caesura") or {}).get("writes"):
        console.print(tool_table(Redactor.from_environ().data(data)))
    return 0
