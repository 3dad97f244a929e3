"""The run journal (L4): the home and its database, ordering, group commit, lifecycle, a failed write."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from hct_cli.events import Event
from hct_cli.store.home import DB_NAME, connect, home_dir
from hct_cli.store.journal import Journal, RunConfig
from hct_cli.store.runs import events_of, find_run
from tests.store.journaled import SCORE_TEXT, count_events, issue_event, result_event, start_run

pytestmark = pytest.mark.timeout(60)


# -- home and database ---------------------------------------------------------------------


def test_home_dir_follows_hct_home_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HCT_HOME", str(tmp_path / "explicit"))
    assert home_dir() == tmp_path / "explicit"
    monkeypatch.delenv("HCT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert home_dir() == tmp_path / "xdg" / "hct"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert home_dir() == tmp_path / "h" / ".local" / "share" / "hct"


def test_connect_creates_the_database_in_wal_mode_with_every_table(_isolated_home: Path) -> None:
    db = connect()
    assert (_isolated_home / DB_NAME).is_file()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "events", "approvals", "cache", "predictors"} <= tables
    assert connect(durable="full").execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    connect()  # the schema applies twice without complaint


def test_connect_reports_an_unusable_home_as_a_store_error(tmp_path: Path) -> None:
    from hct_cli.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open hct's database") as info:
        connect(home=blocker / "sub")
    assert "HCT_HOME" in info.value.hint


# -- writing -------------------------------------------------------------------------------


def test_start_journals_a_running_run_with_its_config() -> None:
    db = connect()
    config = RunConfig(inputs={"diff": "x"}, seed=3, time_scale=0.5, dispatch="batch", budget_usd=1.5, cache=False)
    journal = start_run(db, "abc123", config)
    assert (journal.run_id, journal.segment) == ("abc123", 1)
    run = find_run(db, "abc123")
    assert run.status == "running"
    assert run.pid == os.getpid()
    assert run.segments == 1 and run.ended_at is None and run.result is None
    assert run.score == "tiny" and run.score_text == SCORE_TEXT
    assert run.config == config


def test_events_outside_a_loop_are_written_in_order_at_once() -> None:
    db = connect()
    journal = start_run(db)
    other = connect()
    journal(Event("run_start", 0.0, None, 0, {"run_id": journal.run_id}))
    assert count_events(other, journal.run_id) == 1  # visible to another connection at once
    journal(issue_event("a"))
    journal(result_event("a"))
    journal(Event("cue", 1.1, "a", 1))
    events = list(events_of(other, journal.run_id))
    assert [(e["segment"], e["seq"], e["kind"], e["station"]) for e in events] == [
        (1, 1, "run_start", None),
        (1, 2, "issue", "a"),
        (1, 3, "result", "a"),
        (1, 4, "cue", "a"),
    ]
    assert events[0]["data"] == {"run_id": journal.run_id}
    assert events[3]["data"] == {}  # no data is stored as NULL and read back as {}
    assert events[2]["data"]["output"] == "a@1 says hi"
    assert events[0]["at"] == pytest.approx(journal.epoch)
    assert events[2]["at"] == pytest.approx(journal.epoch + 1.0)
    assert journal.results == 1


def test_a_burst_within_one_loop_turn_is_one_transaction() -> None:
    db = connect()
    journal = start_run(db)
    other = connect()
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    seen: dict[str, int] = {}

    async def burst() -> None:
        for i in range(50):
            journal(Event("cue", i / 100, f"s{i}", 1))
        seen["before"] = count_events(other, journal.run_id)  # the turn has not ended: nothing committed
        await asyncio.sleep(0)
        seen["after"] = count_events(other, journal.run_id)
        journal(Event("cue", 1.0, "s0", 1))  # a later turn: a second transaction
        await asyncio.sleep(0)
        seen["later"] = count_events(other, journal.run_id)

    asyncio.run(burst())
    assert seen == {"before": 0, "after": 50, "later": 51}
    assert [s for s in statements if s.strip().upper() == "BEGIN"] == ["BEGIN", "BEGIN"]
    assert [e["seq"] for e in events_of(other, journal.run_id)] == list(range(1, 52))


def test_the_flush_runs_before_callbacks_scheduled_later_in_the_same_turn() -> None:
    db = connect()
    journal = start_run(db)
    other = connect()
    visible: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        journal(result_event("a"))
        loop.call_soon(lambda: visible.append(count_events(other, journal.run_id)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert visible == [1]


def test_counting_flush_calls_in_a_loop() -> None:
    db = connect()
    journal = start_run(db)
    calls: list[int] = []
    original = journal.flush

    def counting() -> None:
        calls.append(len(journal._rows))
        original()

    journal.flush = counting  # type: ignore[method-assign]

    async def main() -> None:
        for i in range(20):
            journal(Event("cue", 0.0, f"s{i}", 1))
        await asyncio.sleep(0)
        for i in range(5):
            journal(Event("cue", 0.0, f"s{i}", 1))
        await asyncio.sleep(0)

    asyncio.run(main())
    assert calls == [20, 5]
    assert count_events(db, journal.run_id) == 25


def test_an_event_after_the_loop_has_closed_is_written_at_once() -> None:
    """The module says events outside a loop, before *or after* the run, are written at once.

    The journal remembers the first loop it saw; once ``asyncio.run`` has closed it, the next event
    must not be scheduled on that dead loop.
    """
    db = connect()
    journal = start_run(db)

    async def during() -> None:
        journal(Event("run_start", 0.0))

    asyncio.run(during())
    journal(Event("run_end", 1.0))  # after the run, outside any loop
    assert [e["kind"] for e in events_of(connect(), journal.run_id)] == ["run_start", "run_end"]


def test_finish_flushes_and_records_how_the_run_ended() -> None:
    db = connect()
    journal = start_run(db)

    async def main() -> None:
        journal(result_event("a", cost_usd=0.5))
        journal.finish("completed", 0.5, {"run_id": journal.run_id, "answer": 42})  # before the loop turn ends

    asyncio.run(main())
    run = find_run(connect(), journal.run_id)
    assert run.status == "completed"
    assert run.cost_usd == 0.5
    assert run.result == {"run_id": journal.run_id, "answer": 42}
    assert run.pid is None and run.ended_at is not None and run.ended_at >= run.started_at
    assert [e["kind"] for e in events_of(db, journal.run_id)] == ["result"]


def test_resume_bumps_the_segment_and_restarts_the_sequence() -> None:
    db = connect()
    first = start_run(db)
    first(issue_event("a"))
    first(result_event("a"))
    first.finish("interrupted", 0.25, {"status": "interrupted"})
    second = Journal.resume(db, find_run(db, first.run_id))
    assert second.segment == 2
    run = find_run(db, first.run_id)
    assert run.status == "running" and run.segments == 2 and run.ended_at is None and run.pid == os.getpid()
    second(issue_event("b"))
    second.finish("completed", 0.5, {"status": "completed"})
    third = Journal.resume(db, find_run(db, first.run_id))
    assert third.segment == 3
    third(Event("run_end", 0.0))
    assert [(e["segment"], e["seq"], e["kind"]) for e in events_of(db, first.run_id)] == [
        (1, 1, "issue"),
        (1, 2, "result"),
        (2, 1, "issue"),
        (3, 1, "run_end"),
    ]


# -- the run's configuration ----------------------------------------------------------------


def test_run_config_round_trips_and_ignores_unknown_fields() -> None:
    config = RunConfig(inputs={"n": 3}, seed=9, simulate=False, local="all", durable="full")
    assert RunConfig.from_json(config.to_json()) == config
    data = json.loads(config.to_json())
    data["added_later"] = True
    assert RunConfig.from_json(json.dumps(data)) == config


# -- a failed write --------------------------------------------------------------------------


def test_a_journal_that_cannot_write_mid_run_ends_the_run_with_the_error(tmp_path: Path) -> None:
    from hct_cli.errors import CorruptStoreError

    db = connect(home=tmp_path)
    journal = Journal.start(db, "r1", "s", None, "hct: 1\n", RunConfig())
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()
    db.close()
    with (tmp_path / DB_NAME).open("r+b") as f:  # the events table's root page, overwritten
        f.seek((root - 1) * page_size)
        f.write(b"\xa5" * page_size)
    journal.db = connect(home=tmp_path)
    failures: list[BaseException] = []
    journal.on_failure = failures.append

    async def run() -> None:
        journal(Event("run_start", 0.0, None, 0, {"run_id": "r1"}))  # the flush is scheduled, not run here
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    logged: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: logged.append(context))
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    assert not logged  # nothing escaped into the loop's handler (which prints a traceback)
    assert [type(f) for f in failures] == [CorruptStoreError]
