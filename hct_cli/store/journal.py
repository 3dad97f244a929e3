"""The run journal (L4): every signal of a run, in SQLite, before its effect is visible.

:class:`Journal` observes the engine's events. It buffers them and commits the buffer once per
turn of the event loop (group commit): the flush is scheduled the moment the first event of a
turn arrives, so it runs before any task or callback that turn scheduled afterwards, such as the
first step of a dependent's call. Nothing outside the process learns of a result before the
journal holds it, yet a burst of commits costs one SQLite transaction.

A run is journaled in *segments*: the first run is segment 1, each ``--resume`` adds one, with
the :class:`RunConfig` it was performed with. What is read back (the run history, ``hct show``,
what a resume needs) is :mod:`hct_cli.store.runs`'; who may write a run is
:mod:`hct_cli.store.lock`'s.

Fault injection for tests: ``HCT_FAULT=mid:K`` kills the process with SIGKILL while the
transaction holding the K-th journaled result is open (it is lost), ``HCT_FAULT=after:K`` right
after it commits; ``tool_mid:K`` and ``tool_after:K`` do the same for the K-th tool call's
result (the call was made, and its result is lost, or journaled).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hct_cli.errors import HctError, RunError
from hct_cli.jsonio import dumps, encoder
from hct_cli.redact import Redactor
from hct_cli.store.lock import process_start

if TYPE_CHECKING:
    from hct_cli.events import Event
    from hct_cli.score import Score
    from hct_cli.store.runs import RunRow

__all__ = ["Journal", "RunConfig"]

#: Engine events that are not signals: ``ready`` follows from the cues journaled before it.
_UNJOURNALED = frozenset({"ready"})

_encode = encoder(compact=True)  # every event, so built once

_INSERT = "INSERT INTO events (run_id, segment, seq, at, kind, station, version, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class RunConfig:
    """Everything ``--resume`` restores besides the score itself."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    simulate: bool = True
    time_scale: float = 1.0
    local: str | None = None
    dispatch: str = "reactive"
    budget_usd: float | None = None
    cache: bool = True
    durable: str = "normal"
    bus: str | None = None  # a Redis URL in distributed mode; None: in process
    # Inputs journaled redacted -> a keyed hash of the real value (hct_cli.redact.seal).
    sealed: Mapping[str, str] = field(default_factory=dict)

    def budget(self, score: Score) -> float | None:
        """The spend cap in force: ``--budget``, else the score's ``routing.budget_usd``."""
        return self.budget_usd if self.budget_usd is not None else score.routing.budget_usd

    def to_json(self, redact: Redactor | None = None) -> str:
        """The configuration as JSON; with ``redact``, secrets replaced in its values first, and
        each input that held one sealed, so that a resume can tell its real value again. A
        password in the bus URL is masked: a resume takes it from the environment."""
        data = asdict(self)
        if self.bus is not None:
            from hct_cli.bus.redis import shown_url

            data["bus"] = shown_url(self.bus)
        if redact is None or not redact:
            return dumps(data)
        from hct_cli.redact import seal

        data = redact.data(data)
        sealed = dict(self.sealed)
        for name, value in self.inputs.items():
            if data["inputs"].get(name) != value:
                sealed[name] = seal(value)
        data["sealed"] = sealed
        return dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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
        self.tool_results = 0  # tool calls' results journaled by this process
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
        elif event.kind == "tool_result":
            self.tool_results += 1
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
            if self._fault is not None and self._faulted("mid"):
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
        if self._fault is not None and self._faulted("after"):
            os.kill(os.getpid(), signal.SIGKILL)

    def _faulted(self, when: str) -> bool:
        """Whether the fault plan kills the process now (``when``: mid or after the commit)."""
        assert self._fault is not None
        mode, count = self._fault
        if mode == when:
            return self.results >= count
        return mode == f"tool_{when}" and self.tool_results >= count


def _fault_plan() -> tuple[str, int] | None:
    plan = os.environ.get("HCT_FAULT", "")
    mode, _, count = plan.partition(":")
    if mode in ("mid", "after", "tool_mid", "tool_after") and count.isdigit():
        return mode, int(count)
    return None


def _write(db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    try:
        db.execute(sql, params)
    except sqlite3.Error as exc:
        raise RunError(
            f"cannot write the journal: {exc}", hint="Check free disk space and HCT_HOME's permissions."
        ) from exc
