"""Reading the run journal: the run history, what ``hct show`` prints, what a resume needs.

The runs table holds one row a run (:class:`RunRow`), the events table every journaled signal.
:func:`list_runs` and :func:`find_run` read the history (an unfinished run's cost summed from its
results, a ``running`` run whose process is gone shown ``crashed``); :func:`recall` gives a
resume every call whose result was journaled, so it is never paid again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hct_cli.bus.base import Broadcast
from hct_cli.errors import RunNotFoundError
from hct_cli.store.journal import RunConfig
from hct_cli.store.lock import alive

__all__ = [
    "RecalledCall",
    "RunRow",
    "ToolJournal",
    "caesura_writes",
    "call_counts",
    "calls_of",
    "events_of",
    "find_run",
    "list_runs",
    "recall",
    "spend",
    "squashed_versions",
    "tool_calls_of",
    "tool_journal",
]


@dataclass(frozen=True)
class RunRow:
    run_id: str
    score: str
    score_path: str | None
    score_text: str
    config: RunConfig
    status: str
    started_at: float
    ended_at: float | None
    cost_usd: float
    segments: int
    pid: int | None
    result: dict[str, Any] | None
    pid_start: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "score": self.score,
            "status": self.status,
            "started_at": self.started_at,
            "cost_usd": round(self.cost_usd, 8),
        }


@dataclass(frozen=True)
class RecalledCall:
    """A journaled call: the request it answered (by digest) and its result."""

    model: str | None
    tier: str | None
    digest: str | None
    result: Broadcast
    arrived_s: float = 0.0  # when it arrived on the run's one timeline (see :func:`recall`)


@dataclass(frozen=True)
class ToolJournal:
    """The tool calls of a run's journal, by digest: those whose result it holds (their
    ``tool_result`` data), and those it holds only as sent (their ``tool_call`` data)."""

    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sent: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def tool_journal(db: sqlite3.Connection, run_id: str) -> ToolJournal:
    """What a resume needs of the run's tool calls: answered ones are answered again, a write sent
    without a result is in doubt. A failed call (the server could not answer) is not kept."""
    sent: dict[str, Mapping[str, Any]] = {}
    results: dict[str, Mapping[str, Any]] = {}
    for kind, data in db.execute(
        "SELECT kind, data FROM events WHERE run_id = ? AND kind IN ('tool_call', 'tool_result') ORDER BY segment, seq",
        (run_id,),
    ):
        fields = json.loads(data) if data else {}
        digest = fields.get("digest")
        if not isinstance(digest, str):
            continue
        if kind == "tool_call":
            sent[digest] = fields
        elif fields.get("ok", True) or fields.get("text"):
            results[digest] = fields
    return ToolJournal(results, {digest: call for digest, call in sent.items() if digest not in results})


_RUN_COLUMNS = (
    "run_id, score, score_path, score_text, config, status, started_at, ended_at, cost_usd, segments, pid, result,"
    " pid_start"
)


def _row(values: tuple[Any, ...]) -> RunRow:
    run_id, score, path, text, config, status, started, ended, cost, segments, pid, result, pid_start = values
    return RunRow(
        run_id,
        score,
        path,
        text,
        RunConfig.from_json(config),
        _status(status, pid, pid_start),
        started,
        ended,
        cost,
        segments,
        pid,
        json.loads(result) if result else None,
        pid_start,
    )


def _status(status: str, pid: int | None, pid_start: int | None = None) -> str:
    """A run journaled as running whose process is gone crashed (this machine's pids only)."""
    if status != "running" or pid is None:
        return status
    return status if alive(pid, pid_start) else "crashed"


def list_runs(db: sqlite3.Connection, limit: int | None = None) -> list[RunRow]:
    """Runs, newest first."""
    sql = f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY started_at DESC, rowid DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = [_row(values) for values in db.execute(sql)]
    return [_with_spend(db, row) for row in rows]


def spend(db: sqlite3.Connection, run_id: str) -> float:
    """What a run cost so far: the sum over every journaled result (calls, judges, warm-ups; a
    cache hit costs nothing), which is what ``hct show`` lists. A finished segment's ``cost_usd``
    is the same figure: the engine starts a resume from it (``spent_before_usd``)."""
    (total,) = db.execute(
        "SELECT COALESCE(SUM(json_extract(data, '$.cost_usd')), 0) FROM events WHERE run_id = ? AND kind = 'result'",
        (run_id,),
    ).fetchone()
    return float(total)


def _with_spend(db: sqlite3.Connection, run: RunRow) -> RunRow:
    """An unfinished run's cost, summed from its journaled results."""
    if run.ended_at is not None:
        return run
    return RunRow(**{**run.__dict__, "cost_usd": spend(db, run.run_id)})


def find_run(db: sqlite3.Connection, run_id: str) -> RunRow:
    """The run with this id, or with this unique id prefix."""
    if not run_id:
        raise RunNotFoundError("no run id given", hint="List the runs with `hct runs`.")
    rows = db.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE substr(run_id, 1, ?) = ?", (len(run_id), run_id)
    ).fetchall()
    if len(rows) == 1:
        return _with_spend(db, _row(rows[0]))
    if not rows:
        raise RunNotFoundError(f"no journaled run has the id {run_id!r}", hint="List the runs with `hct runs`.")
    exact = [r for r in rows if r[0] == run_id]
    if exact:
        return _with_spend(db, _row(exact[0]))
    raise RunNotFoundError(
        f"{len(rows)} runs start with {run_id!r}", hint="Give more characters of the id (see `hct runs`)."
    )


def events_of(db: sqlite3.Connection, run_id: str) -> Iterator[dict[str, Any]]:
    """Every journaled event of a run, segment by segment, in order."""
    for segment, seq, at, kind, station, version, data in db.execute(
        "SELECT segment, seq, at, kind, station, version, data FROM events WHERE run_id = ? ORDER BY segment, seq",
        (run_id,),
    ):
        yield {
            "segment": segment,
            "seq": seq,
            "at": at,
            "kind": kind,
            "station": station,
            "version": version,
            "data": json.loads(data) if data else {},
        }


def _results(db: sqlite3.Connection, run_id: str, *, with_time: bool = False) -> Iterator[tuple[Any, ...]]:
    for segment, station, version, data, at in db.execute(
        "SELECT segment, station, version, data, at FROM events WHERE run_id = ? AND kind = 'result'"
        " ORDER BY segment, seq",
        (run_id,),
    ):
        yield (
            (segment, station, version, json.loads(data), at)
            if with_time
            else (segment, station, version, json.loads(data))
        )


def calls_of(db: sqlite3.Connection, run_id: str) -> list[dict[str, Any]]:
    """Every call whose result was journaled (cache hits included, marked ``cached``)."""
    return [
        {
            "agent": station,
            "version": version,
            "purpose": data.get("purpose", "call"),
            "model": data.get("model"),
            "cost_usd": data.get("cost_usd", 0.0),
            "cached": bool(data.get("cached", False)),
            "worker": data.get("worker"),
            "ok": bool(data.get("ok", True)),
            "segment": segment,
        }
        for segment, station, version, data in _results(db, run_id)
    ]


def call_counts(db: sqlite3.Connection, run_id: str) -> dict[str, int]:
    """How the calls of a run (every segment) ended, as docs/figures.md defines them.

    ``paid_calls``: successful results not served by the cache (judges and warm-ups included);
    ``cached_calls``: results the cache served; ``squashed_calls``: calls a speculation's squash
    or a caesura threw away, in flight or answered (an answered one is paid too), each once
    though a resume replays its squash;
    ``lost_calls``: calls issued to a provider whose result no segment journaled before it ended,
    squashed ones aside, and calls a worker was making when it died or stopped (``reclaim``,
    ``hand_back``: another worker made them again)."""
    paid, cached, squashed, lost = db.execute(
        """
        WITH squashed(segment, station, version) AS (
          SELECT segment, station, version FROM events
          WHERE run_id = :run AND kind = 'squash' AND COALESCE(json_extract(data, '$.call'), 1)
          UNION ALL
          SELECT events.segment, squashed.key, squashed.value
          FROM events, json_each(events.data, '$.squashed') AS squashed
          WHERE run_id = :run AND kind = 'caesura')
        SELECT
          (SELECT COUNT(*) FROM events WHERE run_id = :run AND kind = 'result'
             AND COALESCE(json_extract(data, '$.ok'), 1) AND NOT COALESCE(json_extract(data, '$.cached'), 0)),
          (SELECT COUNT(*) FROM events WHERE run_id = :run AND kind = 'result'
             AND COALESCE(json_extract(data, '$.cached'), 0)),
          (SELECT COUNT(*) FROM (SELECT DISTINCT station, version FROM squashed)),
          (SELECT COUNT(*) FROM (
             SELECT segment, station, version FROM events
             WHERE run_id = :run AND kind = 'issue' AND NOT COALESCE(json_extract(data, '$.restored'), 0)
             EXCEPT
             SELECT segment, station, version FROM events
             WHERE run_id = :run AND kind = 'result' AND COALESCE(json_extract(data, '$.purpose'), 'call') = 'call'
             EXCEPT
             SELECT segment, station, version FROM squashed))
          + (SELECT COUNT(*) FROM events WHERE run_id = :run AND kind IN ('reclaim', 'hand_back'))
        """,
        {"run": run_id},
    ).fetchone()
    return {
        "paid_calls": int(paid),
        "cached_calls": int(cached),
        "squashed_calls": int(squashed),
        "lost_calls": int(lost),
    }


def squashed_versions(db: sqlite3.Connection, run_id: str) -> dict[str, int]:
    """Per agent, the highest version a caesura squashed: a resume starts after it."""
    squashed: dict[str, int] = {}
    for (data,) in db.execute("SELECT data FROM events WHERE run_id = ? AND kind = 'caesura'", (run_id,)):
        for agent, version in (json.loads(data) or {}).get("squashed", {}).items():
            squashed[agent] = max(squashed.get(agent, 0), int(version))
    return squashed


def recall(db: sqlite3.Connection, run_id: str) -> dict[tuple[str, int, str], RecalledCall]:
    """Every successful journaled call, keyed by (agent, version, purpose); the latest wins. The
    dict's order is the order the results arrived in, segment after segment (a result called again
    in a later segment takes the later place): the order a resume delivers them in."""
    squashed = squashed_versions(db, run_id)
    issued: dict[tuple[int, str, int], dict[str, Any]] = {}
    for segment, station, version, data in db.execute(
        "SELECT segment, station, version, data FROM events WHERE run_id = ? AND kind = 'issue'", (run_id,)
    ):
        issued[(segment, station, version)] = json.loads(data) if data else {}
    clock = _timeline(db, run_id)
    found: dict[tuple[str, int, str], RecalledCall] = {}
    for segment, station, version, data, at in _results(db, run_id, with_time=True):
        if not data.get("ok", True) or version <= squashed.get(station, 0):
            continue
        purpose = data.get("purpose", "call")
        request = issued.get((segment, station, version), {}) if purpose == "call" else data
        if purpose == "round":  # a tool loop's round: one per step
            purpose = f"round:{data.get('step', 0)}"
        message = Broadcast.from_data(station, version, data)
        found.pop((station, version, purpose), None)
        base, offset = clock.get(segment, (at, 0.0))
        found[(station, version, purpose)] = RecalledCall(
            request.get("model"), request.get("tier"), request.get("digest"), message, at - base + offset
        )
    return found


def _timeline(db: sqlite3.Connection, run_id: str) -> dict[int, tuple[float, float]]:
    """Per segment, (its start, where that start lies on the run's one timeline). Segment 1 starts
    it at 0; a resumed segment replays the journal in no time and then runs on from where its
    first new call was first issued: its ``replay_order`` event says where (``offset_s``)."""
    clock: dict[int, tuple[float, float]] = {}
    for segment, start in db.execute(
        "SELECT segment, MIN(at) FROM events WHERE run_id = ? GROUP BY segment", (run_id,)
    ):
        clock[segment] = (float(start), 0.0)
    for segment, data in db.execute(
        "SELECT segment, data FROM events WHERE run_id = ? AND kind = 'replay_order'", (run_id,)
    ):
        offset = (json.loads(data) if data else {}).get("offset_s")
        if segment in clock and isinstance(offset, int | float):
            clock[segment] = (clock[segment][0], float(offset))
    return clock


def _tool_entry(event: Mapping[str, Any], version: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """What every journaled tool event says of its call: where it stands and which call it is."""
    return {
        "version": version,
        "segment": int(event["segment"]),
        "step": data.get("step"),
        "index": data.get("index"),
        "tool": data.get("tool"),
        "effects": data.get("effects"),
        "digest": data.get("digest"),
    }


def tool_calls_of(events: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per agent, its tool calls as the journal holds them (``events_of``'s rows), in the order
    sent: each ``tool_call`` with its ``tool_result`` (same segment, agent, version, step and
    call; or, for a result a later segment journaled, the same digest), holds and refusals.

    ``state`` says how each ended: ``ok``, ``error``, ``refused``, ``held`` (a speculative write
    that waited, no result journaled) or ``sent``: sent and no result journaled, the call in doubt
    after a crash (a write of it may or may not have happened)."""
    found: dict[str, list[dict[str, Any]]] = {}
    open_calls: dict[tuple[int, str, int, Any, Any], dict[str, Any]] = {}
    by_digest: dict[tuple[str, Any], dict[str, Any]] = {}  # calls without a result, by digest
    for event in events:
        kind, station, data = event["kind"], event["station"], event["data"] or {}
        if station is None or kind not in ("tool_call", "tool_hold", "tool_result", "refused"):
            continue
        if kind == "refused" and "tool" not in data:
            continue  # a provider's refusal, not a tool's
        version = int(event["version"] or 0)
        key = (int(event["segment"]), str(station), version, data.get("step"), data.get("index"))
        if kind in ("tool_call", "refused"):
            entry = {
                **_tool_entry(event, version, data),
                "arguments": data.get("arguments"),
                "speculative": bool(data.get("speculative", False)),
                "state": "refused" if kind == "refused" else "sent",
                "ok": False if kind == "refused" else None,
                "duration_s": None,
                "size": None,
                "error": data.get("reason") if kind == "refused" else None,
                "cached": False,
                "restored": False,
                "held": False,
                "refused": kind == "refused",
                "worker": None,
            }
            found.setdefault(str(station), []).append(entry)
            if kind == "tool_call":
                open_calls[key] = entry
                by_digest[(str(station), data.get("digest"))] = entry
            continue
        sent = open_calls.get(key) or by_digest.get((str(station), data.get("digest")))
        if kind == "tool_hold":
            if sent is not None:
                sent["held"] = True
                sent["state"] = "held" if sent["state"] == "sent" else sent["state"]
            continue
        if sent is not None:
            entry = sent
        else:  # an answer whose call was not journaled: all we know is the answer
            entry = {
                **_tool_entry(event, version, data),
                "arguments": None,
                "speculative": False,
                "held": False,
                "refused": False,
                "worker": None,
            }
            found.setdefault(str(station), []).append(entry)
        open_calls.pop(key, None)
        by_digest.pop((str(station), data.get("digest")), None)
        ok = bool(data.get("ok", True))
        entry.update(
            state="ok" if ok else "error",
            ok=ok,
            duration_s=data.get("duration_s"),
            size=data.get("size"),
            error=data.get("error"),
            cached=bool(data.get("cached", False)),
            restored=bool(data.get("restored", False)),
            worker=data.get("worker"),  # the worker that made it (a server on: worker)
        )
    return found


def caesura_writes(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The write calls made after the checkpoint that the run's last caesura rolled back to (a
    rollback cannot undo them); None when no caesura was journaled."""
    writes: list[dict[str, Any]] | None = None
    for event in events:
        if event["kind"] == "caesura":
            writes = list((event["data"] or {}).get("writes") or [])
    return writes
