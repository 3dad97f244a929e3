"""The run journal (L4): ordering, group commit, lifecycle, lookups, recall, lost and crashed runs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hct_cli.engine.events import Event
from hct_cli.errors import RunNotFoundError
from hct_cli.run.config import RunConfig
from hct_cli.store.home import DB_NAME, connect, home_dir
from hct_cli.store.journal import (
    Journal,
    call_counts,
    calls_of,
    events_of,
    find_run,
    list_runs,
    next_verdict,
    recall,
    record_verdict,
    squashed_versions,
)

pytestmark = pytest.mark.timeout(60)

SCORE_TEXT = "hct: 1\nname: tiny\nagents:\n  a: {prompt: hi}\n  b: {prompt: there, cues: [a]}\n"


def _start(db: sqlite3.Connection, run_id: str = "run000000001", config: RunConfig | None = None) -> Journal:
    return Journal.start(db, run_id, "tiny", None, SCORE_TEXT, config or RunConfig(seed=7))


def _result(station: str, version: int = 1, **data: Any) -> Event:
    payload = {
        "purpose": "call",
        "ok": True,
        "output": f"{station}@{version} says hi",
        "error": None,
        "model": "gpt-4o-mini",
        "tier": "fast",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.25,
        "latency_s": 0.5,
        "cached": False,
        "worker": None,
    }
    payload.update(data)
    return Event("result", 1.0, station, version, payload)


def _issue(station: str, version: int = 1, **data: Any) -> Event:
    payload = {"model": "gpt-4o-mini", "tier": "fast", "digest": f"d-{station}-{version}"}
    payload.update(data)
    return Event("issue", 0.5, station, version, payload)


def _count(db: sqlite3.Connection, run_id: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0])


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
    journal = _start(db, "abc123", config)
    assert (journal.run_id, journal.segment) == ("abc123", 1)
    run = find_run(db, "abc123")
    assert run.status == "running"
    assert run.pid == os.getpid()
    assert run.segments == 1 and run.ended_at is None and run.result is None
    assert run.score == "tiny" and run.score_text == SCORE_TEXT
    assert run.config == config


def test_events_outside_a_loop_are_written_in_order_at_once() -> None:
    db = connect()
    journal = _start(db)
    other = connect()
    journal(Event("run_start", 0.0, None, 0, {"run_id": journal.run_id}))
    assert _count(other, journal.run_id) == 1  # visible to another connection at once
    journal(_issue("a"))
    journal(_result("a"))
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
    journal = _start(db)
    other = connect()
    statements: list[str] = []
    db.set_trace_callback(statements.append)
    seen: dict[str, int] = {}

    async def burst() -> None:
        for i in range(50):
            journal(Event("cue", i / 100, f"s{i}", 1))
        seen["before"] = _count(other, journal.run_id)  # the turn has not ended: nothing committed
        await asyncio.sleep(0)
        seen["after"] = _count(other, journal.run_id)
        journal(Event("cue", 1.0, "s0", 1))  # a later turn: a second transaction
        await asyncio.sleep(0)
        seen["later"] = _count(other, journal.run_id)

    asyncio.run(burst())
    assert seen == {"before": 0, "after": 50, "later": 51}
    assert [s for s in statements if s.strip().upper() == "BEGIN"] == ["BEGIN", "BEGIN"]
    assert [e["seq"] for e in events_of(other, journal.run_id)] == list(range(1, 52))


def test_the_flush_runs_before_callbacks_scheduled_later_in_the_same_turn() -> None:
    db = connect()
    journal = _start(db)
    other = connect()
    visible: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        journal(_result("a"))
        loop.call_soon(lambda: visible.append(_count(other, journal.run_id)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert visible == [1]


def test_counting_flush_calls_in_a_loop() -> None:
    db = connect()
    journal = _start(db)
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
    assert _count(db, journal.run_id) == 25


def test_an_event_after_the_loop_has_closed_is_written_at_once() -> None:
    """The module says events outside a loop, before *or after* the run, are written at once.

    The journal remembers the first loop it saw; once ``asyncio.run`` has closed it, the next event
    must not be scheduled on that dead loop.
    """
    db = connect()
    journal = _start(db)

    async def during() -> None:
        journal(Event("run_start", 0.0))

    asyncio.run(during())
    journal(Event("run_end", 1.0))  # after the run, outside any loop
    assert [e["kind"] for e in events_of(connect(), journal.run_id)] == ["run_start", "run_end"]


def test_finish_flushes_and_records_how_the_run_ended() -> None:
    db = connect()
    journal = _start(db)

    async def main() -> None:
        journal(_result("a", cost_usd=0.5))
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
    first = _start(db)
    first(_issue("a"))
    first(_result("a"))
    first.finish("interrupted", 0.25, {"status": "interrupted"})
    second = Journal.resume(db, find_run(db, first.run_id))
    assert second.segment == 2
    run = find_run(db, first.run_id)
    assert run.status == "running" and run.segments == 2 and run.ended_at is None and run.pid == os.getpid()
    second(_issue("b"))
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


# -- reading -------------------------------------------------------------------------------


def test_list_runs_is_newest_first_and_limited() -> None:
    db = connect()
    for n, run_id in enumerate(("older", "middle", "newest")):
        _start(db, run_id)
        db.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", (1000.0 + n, run_id))
    assert [r.run_id for r in list_runs(db)] == ["newest", "middle", "older"]
    assert [r.run_id for r in list_runs(db, 2)] == ["newest", "middle"]
    assert list_runs(db, 0) == []
    assert list_runs(connect(home=home_dir() / "empty")) == []


def test_an_unfinished_runs_cost_is_summed_from_its_results() -> None:
    db = connect()
    journal = _start(db)
    journal(_result("a", cost_usd=0.25))
    journal(_result("b", cost_usd=0.5))
    assert find_run(db, journal.run_id).cost_usd == pytest.approx(0.75)
    assert list_runs(db)[0].cost_usd == pytest.approx(0.75)
    journal.finish("completed", 2.0, {})
    assert find_run(db, journal.run_id).cost_usd == 2.0  # a finished run keeps its recorded cost


def test_find_run_by_unique_prefix_exact_id_ambiguous_and_unknown() -> None:
    db = connect()
    for run_id in ("abc111", "abc222", "abd333", "xy", "xyz"):
        _start(db, run_id)
    assert find_run(db, "abc1").run_id == "abc111"
    assert find_run(db, "abd").run_id == "abd333"
    assert find_run(db, "abc222").run_id == "abc222"
    assert find_run(db, "xy").run_id == "xy"  # an exact id wins over the longer one it prefixes
    with pytest.raises(RunNotFoundError, match="2 runs start with 'abc'") as ambiguous:
        find_run(db, "abc")
    assert "more characters" in ambiguous.value.hint
    with pytest.raises(RunNotFoundError, match="no journaled run has the id 'nope'") as unknown:
        find_run(db, "nope")
    assert "hct runs" in unknown.value.hint
    assert unknown.value.exit_code == 1


@pytest.mark.parametrize("given", ["", "%", "_", "a_c1"])
def test_find_run_takes_the_id_literally(given: str) -> None:
    """An empty id or SQL LIKE wildcards are not prefixes of any run id."""
    db = connect()
    _start(db, "abc111")
    with pytest.raises(RunNotFoundError):
        find_run(db, given)


def test_calls_of_lists_every_journaled_result() -> None:
    db = connect()
    journal = _start(db)
    journal(_issue("a"))
    journal(_result("a", cost_usd=0.1, worker="w1"))
    journal(_result("b", cached=True, cost_usd=0.0))
    journal(_result("b", 2, ok=False, output=None, error="boom"))
    journal(Event("result", 2.0, "a", 1, {"purpose": "judge", "cost_usd": 0.01, "model": "judge-model"}))
    calls = calls_of(db, journal.run_id)
    assert [(c["agent"], c["version"], c["purpose"], c["cached"], c["ok"], c["worker"]) for c in calls] == [
        ("a", 1, "call", False, True, "w1"),
        ("b", 1, "call", True, True, None),
        ("b", 2, "call", False, False, None),
        ("a", 1, "judge", False, True, None),
    ]
    assert [c["cost_usd"] for c in calls] == [0.1, 0.0, 0.25, 0.01]
    assert {c["segment"] for c in calls} == {1}


def test_lost_calls_are_issues_without_a_result_in_their_segment() -> None:
    db = connect()
    first = _start(db)
    first(_issue("a"))
    first(_result("a"))
    first(_issue("b"))  # lost: segment 1 ends without b's result
    first(_issue("c"))
    first(Event("result", 1.0, "c", 1, {"purpose": "judge", "ok": True}))  # a judge does not answer the call
    assert call_counts(db, first.run_id)["lost_calls"] == 2
    second = Journal.resume(db, find_run(db, first.run_id))
    second(_issue("a", restored=True))  # answered from the journal: no call was made
    second(_issue("b"))
    second(_result("b"))  # answers segment 2's issue, not segment 1's
    second(_issue("d", 2))
    assert call_counts(db, first.run_id)["lost_calls"] == 3  # b and c of segment 1, d@2 of segment 2
    second(_result("d", 2, ok=False, output=None, error="failed"))  # a failed result still answers the issue
    assert call_counts(db, first.run_id)["lost_calls"] == 2


def test_squashed_calls_are_counted_squashed_not_lost() -> None:
    db = connect()
    journal = _start(db)
    journal(_issue("a"))
    journal(_result("a"))
    journal(_issue("b"))  # fired on the held a@1, still in flight when its gate failed
    journal(Event("squash", 1.0, "b", 1, {"on": "a@1", "cost_usd": 0.0, "call": True}))
    journal(Event("squash", 1.0, "c", 0, {"on": "a@1", "cost_usd": 0.0, "call": False}))  # had not called
    journal(_issue("d"))  # in flight at the caesura
    journal(_issue("e"))
    journal(_result("e", cached=True))  # answered (from the cache), then thrown away by the caesura
    journal(Event("caesura", 2.0, None, 0, {"reason": "stop", "checkpoint": 0, "squashed": {"d": 1, "e": 1}}))
    journal(_issue("f"))  # in flight when the process died
    assert call_counts(db, journal.run_id) == {"paid_calls": 1, "cached_calls": 1, "squashed_calls": 3, "lost_calls": 1}


def test_recall_keys_by_agent_version_and_purpose() -> None:
    db = connect()
    journal = _start(db)
    journal(_issue("a", model="m-issued", tier="t-issued", digest="dig-a"))
    journal(_result("a", model="m-answered", tier="t-answered", output="A1", cost_usd=0.3, cached=True))
    journal(
        Event(
            "result",
            2.0,
            "a",
            1,
            {"purpose": "judge", "ok": True, "output": "{}", "model": "judge", "tier": "fast", "digest": "dig-j"},
        )
    )
    journal(_issue("b"))
    journal(_result("b", ok=False, output=None, error="boom"))  # a failure is never recalled
    journal(_issue("c"))
    journal(_result("c", output="first"))
    journal(_issue("c"))
    journal(_result("c", output="latest"))  # the latest of the same key wins
    found = recall(db, journal.run_id)
    assert set(found) == {("a", 1, "call"), ("a", 1, "judge"), ("c", 1, "call")}
    a = found[("a", 1, "call")]
    assert (a.model, a.tier, a.digest) == ("m-issued", "t-issued", "dig-a")  # the request it answered
    m = a.result
    assert (m.station, m.version, m.ok, m.output, m.model, m.tier) == ("a", 1, True, "A1", "m-answered", "t-answered")
    assert (m.prompt_tokens, m.completion_tokens, m.cost_usd, m.latency_s, m.cached) == (10, 5, 0.3, 0.5, True)
    judge = found[("a", 1, "judge")]
    assert (judge.model, judge.digest) == ("judge", "dig-j")  # a judge's request is in its result
    assert found[("c", 1, "call")].result.output == "latest"


def test_recall_pairs_a_result_with_the_issue_of_its_own_segment() -> None:
    db = connect()
    first = _start(db)
    first(_issue("a", digest="old"))
    first.finish("crashed", 0.0, {})
    second = Journal.resume(db, find_run(db, first.run_id))
    second(_issue("a", digest="new"))
    second(_result("a"))
    assert recall(db, first.run_id)[("a", 1, "call")].digest == "new"


def test_recall_skips_versions_a_caesura_squashed() -> None:
    db = connect()
    journal = _start(db)
    for version in (1, 2, 3):
        journal(_issue("a", version))
        journal(_result("a", version, output=f"a{version}"))
    journal(_issue("b"))
    journal(_result("b"))
    journal(Event("caesura", 3.0, "a", 3, {"reason": "r", "checkpoint": 1, "squashed": {"a": 1}}))
    journal(Event("caesura", 4.0, "a", 3, {"reason": "r", "checkpoint": 2, "squashed": {"a": 2, "b": 0}}))
    assert squashed_versions(db, journal.run_id) == {"a": 2, "b": 0}
    found = recall(db, journal.run_id)
    assert set(found) == {("a", 3, "call"), ("b", 1, "call")}
    assert found[("a", 3, "call")].result.output == "a3"
    assert squashed_versions(db, "no-such-run") == {}


def test_verdicts_are_read_in_order_per_agent() -> None:
    db = connect()
    _start(db)
    first = record_verdict(db, "run000000001", "a", "approve", "looks right")
    other = record_verdict(db, "run000000001", "b", "reject")
    second = record_verdict(db, "run000000001", "a", "reject", "changed my mind")
    assert first < other < second
    assert next_verdict(db, "run000000001", "a", 0) == (first, "approve", "looks right")
    assert next_verdict(db, "run000000001", "a", first) == (second, "reject", "changed my mind")
    assert next_verdict(db, "run000000001", "a", second) is None
    assert next_verdict(db, "run000000001", "b", 0) == (other, "reject", "")
    assert next_verdict(db, "other-run", "a", 0) is None


# -- crashed runs --------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_running_run_whose_process_is_gone_shows_as_crashed() -> None:
    db = connect()
    alive = _start(db, "alive")
    dead = _start(db, "dead")
    done = _start(db, "done")
    done.finish("completed", 0.0, {})
    db.execute("UPDATE runs SET pid = ? WHERE run_id = 'dead'", (_dead_pid(),))
    assert find_run(db, "alive").status == "running"
    assert find_run(db, "dead").status == "crashed"
    assert find_run(db, "done").status == "completed"
    assert {r.run_id: r.status for r in list_runs(db)} == {"alive": "running", "dead": "crashed", "done": "completed"}
    # what is stored stays "running": crashed is what a reader concludes
    assert db.execute("SELECT status FROM runs WHERE run_id = 'dead'").fetchone()[0] == "running"
    assert alive.run_id == "alive" and dead.run_id == "dead"


def test_run_config_round_trips_and_ignores_unknown_fields() -> None:
    config = RunConfig(inputs={"n": 3}, seed=9, simulate=False, local="all", durable="full")
    assert RunConfig.from_json(config.to_json()) == config
    data = json.loads(config.to_json())
    data["added_later"] = True
    assert RunConfig.from_json(json.dumps(data)) == config


# -- one performer a run -----------------------------------------------------------------------


def test_a_claimed_run_is_refused_to_a_second_claim_until_released() -> None:
    from hct_cli.errors import RunBusyError
    from hct_cli.store.journal import claim

    db = connect()
    held = claim(db, "r1")
    with pytest.raises(RunBusyError, match=f"process {os.getpid()}") as info:
        claim(db, "r1")  # a second open file of the lock conflicts, in this process too
    assert "hct perform --resume r1" in info.value.hint
    with claim(db, "r2"):  # another run is another lock
        pass
    held.release()
    with claim(db, "r1"):
        pass


def test_a_recycled_pid_does_not_keep_a_crashed_run_running() -> None:
    from hct_cli.store.journal import process_start

    db = connect()
    Journal.start(db, "r1", "s", None, "hct: 1\n", RunConfig())
    started = process_start(os.getpid())
    if started is None:
        pytest.skip("no /proc: the start time is unknown and the pid alone decides")
    assert find_run(db, "r1").status == "running"
    # The same pid, a process started at another time: the run's own process is gone.
    db.execute("UPDATE runs SET pid_start = ? WHERE run_id = 'r1'", (started + 1,))
    assert find_run(db, "r1").status == "crashed"


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


def test_recall_is_in_arrival_order_on_one_timeline_across_segments() -> None:
    from dataclasses import replace

    db = connect()
    first = _start(db)
    first(Event("run_start", 0.0))
    for name, at in (("b", 1.0), ("a", 2.0), ("c", 3.0)):
        first(_issue(name))
        first(replace(_result(name), time_s=at))
    first.finish("crashed", 0.0, {})
    second = Journal.resume(db, find_run(db, first.run_id))
    second(Event("run_start", 0.0))
    # Segment 2 replayed segment 1 in no time; its clock runs 2.5 s behind the run's timeline.
    second(Event("replay_order", 0.01, None, 0, {"how": "drained", "offset_s": 2.5}))
    second(_issue("d"))
    second(replace(_result("d"), time_s=1.0))
    second(_issue("a", 1))
    second(replace(_result("a", output="again"), time_s=1.5))  # called again: it takes the later place
    found = recall(db, first.run_id)
    assert [key[0] for key in found] == ["b", "c", "d", "a"]
    assert [round(call.arrived_s, 6) for call in found.values()] == [1.0, 3.0, 3.5, 4.0]
