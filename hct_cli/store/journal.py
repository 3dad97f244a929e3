"""The run journal (L4): every signal of a run, in SQLite, before its effect is visible.

:class:`Journal` observes the engine's events. It buffers them and commits the buffer once per
turn of the event loop (group commit): the flush is scheduled the moment the first event of a
turn arrives, so it runs before any task or callback that turn scheduled afterwards, such as the
first step of a dependent's call. Nothing outside the process learns of a result before the
journal holds it, yet a burst of commits costs one SQLite transaction.

A run is journaled in *segments*: the first run is segment 1, each ``--resume`` adds one. From
the journal come the run history (:func:`list_runs`), everything ``hct show`` prints, and what a
resume needs (:func:`recall`): every call whose result was journaled, so it is never paid again.

One process performs a run at a time. :func:`claim` takes an exclusive OS lock on
``$HCT_HOME/locks/RUN.lock`` (``flock``) before a segment is journaled and holds it until the
segment ends; a second ``perform --resume`` of the run is refused naming the holder. The kernel
drops the lock when its process dies, ``kill -9`` included, so a crashed run's lock is never
stale. The runs table keeps the owner's pid and its start time (``/proc/PID/stat`` on Linux), so a
pid the system has since given to another process does not make a crashed run look ``running``.

Fault injection for tests: ``HCT_FAULT=mid:K`` kills the process with SIGKILL while the
transaction holding the K-th journaled result is open (it is lost), ``HCT_FAULT=after:K`` right
after it commits.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from hct_cli.bus.base import Broadcast
from hct_cli.errors import HctError, RunBusyError, RunError, RunNotFoundError
from hct_cli.jsonio import dumps, encoder
from hct_cli.redact import Redactor
from hct_cli.run.config import RunConfig

if TYPE_CHECKING:
    from hct_cli.engine.events import Event

__all__ = [
    "Journal",
    "RecalledCall",
    "RunLock",
    "RunRow",
    "call_counts",
    "calls_of",
    "claim",
    "events_of",
    "find_run",
    "list_runs",
    "next_verdict",
    "process_start",
    "recall",
    "record_verdict",
    "spend",
    "squashed_versions",
]

#: Engine events that are not signals: ``ready`` follows from the cues journaled before it.
_UNJOURNALED = frozenset({"ready"})

_encode = encoder(compact=True)  # every event, so built once

_INSERT = "INSERT INTO events (run_id, segment, seq, at, kind, station, version, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


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


class Journal:
    """Observer that appends a run's events to the database, one transaction per loop turn."""

    def __init__(self, db: sqlite3.Connection, run_id: str, segment: int = 1) -> None:
        self.db = db
        self.run_id = run_id
        self.segment = segment
        self.epoch = time.time()
        self._rows: list[tuple[Any, ...]] = []
        self._seq = 0
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.results = 0  # results journaled by this process
        self._fault = _fault_plan()
        #: Told when a flush the event loop runs fails (nobody would catch it there); the CLI
        #: ends the run with it. Without one, the error is raised into the loop.
        self.on_failure: Callable[[Exception], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(
        cls, db: sqlite3.Connection, run_id: str, score: str, score_path: str | None, score_text: str, config: RunConfig
    ) -> Journal:
        """Journal a new run (segment 1). Secrets in the score or the inputs are journaled redacted."""
        redact = Redactor.from_environ()
        _write(
            db,
            "INSERT INTO runs (run_id, score, score_path, score_text, config, status, started_at, pid, pid_start)"
            " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
            (
                run_id,
                score,
                score_path,
                redact.text(score_text),
                config.to_json(redact),
                time.time(),
                os.getpid(),
                process_start(os.getpid()),
            ),
        )
        return cls(db, run_id, 1)

    @classmethod
    def resume(cls, db: sqlite3.Connection, run: RunRow) -> Journal:
        """Journal the next segment of ``run``."""
        segment = run.segments + 1
        _write(
            db,
            "UPDATE runs SET segments = ?, status = 'running', ended_at = NULL, pid = ?, pid_start = ? WHERE run_id = ?",
            (segment, os.getpid(), process_start(os.getpid()), run.run_id),
        )
        return cls(db, run.run_id, segment)

    def finish(self, status: str, cost_usd: float, result: Mapping[str, Any]) -> None:
        """Flush and record how the run (this segment) ended."""
        self.flush()
        _write(
            self.db,
            "UPDATE runs SET status = ?, ended_at = ?, cost_usd = ?, result = ?, pid = NULL, pid_start = NULL"
            " WHERE run_id = ?",
            (status, time.time(), cost_usd, dumps(Redactor.from_environ().data(result)), self.run_id),
        )

    # -- the observer ----------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if event.kind in _UNJOURNALED:
            return
        data = event.data
        self._seq += 1
        self._rows.append(
            (
                self.run_id,
                self.segment,
                self._seq,
                self.epoch + event.time_s,
                event.kind,
                event.station,
                event.version,
                _encode(data) if data else None,
            )
        )
        if event.kind == "result":
            self.results += 1
        if not self._scheduled:
            loop = self._loop
            if loop is None or loop.is_closed():
                try:
                    loop = self._loop = asyncio.get_running_loop()
                except RuntimeError:  # outside a loop (before or after the run): write at once
                    self.flush()
                    return
            self._scheduled = True
            loop.call_soon(self._flush_turn)

    def _flush_turn(self) -> None:
        try:
            self.flush()
        except HctError as exc:
            if self.on_failure is None:
                raise
            self.on_failure(exc)

    def flush(self) -> None:
        """Commit every buffered event in one transaction."""
        self._scheduled = False
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            self.db.execute("BEGIN")
            self.db.executemany(_INSERT, rows)
            if self._fault is not None and self._fault[0] == "mid" and self.results >= self._fault[1]:
                os.kill(os.getpid(), signal.SIGKILL)
            self.db.execute("COMMIT")
        except HctError:  # a damaged database file, say
            if self.db.in_transaction:
                sqlite3.Connection.execute(self.db, "ROLLBACK")
            raise
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise RunError(
                f"cannot write the journal: {exc}", hint="Check free disk space and HCT_HOME's permissions."
            ) from exc
        if self._fault is not None and self._fault[0] == "after" and self.results >= self._fault[1]:
            os.kill(os.getpid(), signal.SIGKILL)


def _fault_plan() -> tuple[str, int] | None:
    plan = os.environ.get("HCT_FAULT", "")
    mode, _, count = plan.partition(":")
    if mode in ("mid", "after") and count.isdigit():
        return mode, int(count)
    return None


def _write(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    try:
        db.execute(sql, params)
    except sqlite3.Error as exc:
        raise RunError(
            f"cannot write the journal: {exc}", hint="Check free disk space and HCT_HOME's permissions."
        ) from exc


# -- reading ---------------------------------------------------------------------------------

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


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22);
    None where there is no procfs or no such process. With the pid, it names one process: the
    system may give a dead process's pid to another, never with the same start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # fields[0] is field 3
    except (IndexError, ValueError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    """Whether process ``pid`` (started at ``started``, if known) still runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, its start time still tells
        pass
    if started is None:
        return True
    now = process_start(pid)
    return now is None or now == started


def _status(status: str, pid: int | None, pid_start: int | None = None) -> str:
    """A run journaled as running whose process is gone crashed (this machine's pids only)."""
    if status != "running" or pid is None:
        return status
    return status if _alive(pid, pid_start) else "crashed"


# -- one performer a run ---------------------------------------------------------------------

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class RunLock:
    """This process's claim to perform a run; released by :meth:`release`, or by the kernel when
    the process dies. The lock file is never removed: removing a locked file lets a second
    process lock a new file of the same name while the first still holds the old one."""

    def __init__(self, run_id: str, fd: int | None) -> None:
        self.run_id = run_id
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases its lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _lock_dir(db: sqlite3.Connection) -> Path | None:
    for _, name, file in sqlite3.Connection.execute(db, "PRAGMA database_list"):
        if name == "main" and file:
            return Path(file).parent / "locks"
    return None  # an in-memory database: no other process can reach its runs


def claim(db: sqlite3.Connection, run_id: str) -> RunLock:
    """Claim ``run_id`` for this process, or raise :class:`RunBusyError` naming the live
    process that performs it. Atomic: the kernel grants an exclusive ``flock`` to one file
    descriptor only."""
    where = _lock_dir(db)
    if where is None:
        return RunLock(run_id, None)
    where.mkdir(mode=0o700, exist_ok=True)
    path = where / f"{run_id}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by the run's subprocesses
    if not _try_lock(fd):
        pid = _holder(fd)
        os.close(fd)
        raise _busy(db, run_id, pid)
    # Who holds it, for the message of a process refused: written only once the lock is ours.
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {process_start(os.getpid()) or ''}\n".encode())
    return RunLock(run_id, fd)


def _holder(fd: int, wait_s: float = 1.0) -> int | None:
    """The pid the lock file names, once it names a live process: a holder that has just taken
    the lock may not have written its pid over the last holder's (a crashed run's) yet."""
    deadline = time.monotonic() + wait_s
    while True:
        fields = os.pread(fd, 100, 0).decode(errors="replace").split()
        pid = int(fields[0]) if fields and fields[0].isdigit() else None
        started = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        if (pid is not None and _alive(pid, started)) or time.monotonic() >= deadline:
            return pid
        time.sleep(0.01)


def _busy(db: sqlite3.Connection, run_id: str, pid: int | None) -> RunBusyError:
    if pid is None:  # the holder has the lock but has not written its pid yet: the journal's
        row = db.execute("SELECT pid FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        pid = row[0] if row and row[0] is not None else None
    who = f"process {pid}" if pid is not None else "another process"
    stop = f"stop it (`kill {pid}`)" if pid is not None else "stop it"
    return RunBusyError(
        f"run {run_id} is being performed by {who} on this machine; one process performs a run at a time",
        hint=f"Wait for it to end, or {stop} and run `hct perform --resume {run_id}` again; "
        f"`hct approve`/`hct reject` reach the live run as they are.",
    )


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


# -- approvals -------------------------------------------------------------------------------


def record_verdict(db: sqlite3.Connection, run_id: str, agent: str, verdict: str, note: str = "") -> int:
    """A person's decision on an agent's held result; returns its id."""
    cursor = db.execute(
        "INSERT INTO approvals (run_id, agent, verdict, note, at) VALUES (?, ?, ?, ?, ?)",
        (run_id, agent, verdict, note, time.time()),
    )
    return int(cursor.lastrowid or 0)


def next_verdict(db: sqlite3.Connection, run_id: str, agent: str, after: int) -> tuple[int, str, str] | None:
    """The first decision on ``agent`` recorded after id ``after``: (id, verdict, note)."""
    row = db.execute(
        "SELECT id, verdict, note FROM approvals WHERE run_id = ? AND agent = ? AND id > ? ORDER BY id LIMIT 1",
        (run_id, agent, after),
    ).fetchone()
    return (int(row[0]), str(row[1]), str(row[2])) if row else None
