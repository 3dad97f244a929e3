"""Reading the journal: the run history, lookups by id, calls and their counts, recall."""

from __future__ import annotations

import pytest

from hct_cli.errors import RunNotFoundError
from hct_cli.events import Event
from hct_cli.store.home import connect, home_dir
from hct_cli.store.journal import Journal
from hct_cli.store.runs import call_counts, calls_of, find_run, list_runs, recall, squashed_versions
from tests.store.journaled import issue_event, result_event, start_run

pytestmark = pytest.mark.timeout(60)


def test_list_runs_is_newest_first_and_limited() -> None:
    db = connect()
    for n, run_id in enumerate(("older", "middle", "newest")):
        start_run(db, run_id)
        db.execute("UPDATE runs SET started_at = ? WHERE run_id = ?", (1000.0 + n, run_id))
    assert [r.run_id for r in list_runs(db)] == ["newest", "middle", "older"]
    assert [r.run_id for r in list_runs(db, 2)] == ["newest", "middle"]
    assert list_runs(db, 0) == []
    assert list_runs(connect(home=home_dir() / "empty")) == []


def test_an_unfinished_runs_cost_is_summed_from_its_results() -> None:
    db = connect()
    journal = start_run(db)
    journal(result_event("a", cost_usd=0.25))
    journal(result_event("b", cost_usd=0.5))
    assert find_run(db, journal.run_id).cost_usd == pytest.approx(0.75)
    assert list_runs(db)[0].cost_usd == pytest.approx(0.75)
    journal.finish("completed", 2.0, {})
    assert find_run(db, journal.run_id).cost_usd == 2.0  # a finished run keeps its recorded cost


def test_find_run_by_unique_prefix_exact_id_ambiguous_and_unknown() -> None:
    db = connect()
    for run_id in ("abc111", "abc222", "abd333", "xy", "xyz"):
        start_run(db, run_id)
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
    start_run(db, "abc111")
    with pytest.raises(RunNotFoundError):
        find_run(db, given)


def test_calls_of_lists_every_journaled_result() -> None:
    db = connect()
    journal = start_run(db)
    journal(issue_event("a"))
    journal(result_event("a", cost_usd=0.1, worker="w1"))
    journal(result_event("b", cached=True, cost_usd=0.0))
    journal(result_event("b", 2, ok=False, output=None, error="boom"))
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
    first = start_run(db)
    first(issue_event("a"))
    first(result_event("a"))
    first(issue_event("b"))  # lost: segment 1 ends without b's result
    first(issue_event("c"))
    first(Event("result", 1.0, "c", 1, {"purpose": "judge", "ok": True}))  # a judge does not answer the call
    assert call_counts(db, first.run_id)["lost_calls"] == 2
    second = Journal.resume(db, find_run(db, first.run_id))
    second(issue_event("a", restored=True))  # answered from the journal: no call was made
    second(issue_event("b"))
    second(result_event("b"))  # answers segment 2's issue, not segment 1's
    second(issue_event("d", 2))
    assert call_counts(db, first.run_id)["lost_calls"] == 3  # b and c of segment 1, d@2 of segment 2
    second(result_event("d", 2, ok=False, output=None, error="failed"))  # a failed result still answers the issue
    assert call_counts(db, first.run_id)["lost_calls"] == 2


def test_squashed_calls_are_counted_squashed_not_lost() -> None:
    db = connect()
    journal = start_run(db)
    journal(issue_event("a"))
    journal(result_event("a"))
    journal(issue_event("b"))  # fired on the held a@1, still in flight when its gate failed
    journal(Event("squash", 1.0, "b", 1, {"on": "a@1", "cost_usd": 0.0, "call": True}))
    journal(Event("squash", 1.0, "c", 0, {"on": "a@1", "cost_usd": 0.0, "call": False}))  # had not called
    journal(issue_event("d"))  # in flight at the caesura
    journal(issue_event("e"))
    journal(result_event("e", cached=True))  # answered (from the cache), then thrown away by the caesura
    journal(Event("caesura", 2.0, None, 0, {"reason": "stop", "checkpoint": 0, "squashed": {"d": 1, "e": 1}}))
    journal(issue_event("f"))  # in flight when the process died
    assert call_counts(db, journal.run_id) == {"paid_calls": 1, "cached_calls": 1, "squashed_calls": 3, "lost_calls": 1}


def test_recall_keys_by_agent_version_and_purpose() -> None:
    db = connect()
    journal = start_run(db)
    journal(issue_event("a", model="m-issued", tier="t-issued", digest="dig-a"))
    journal(result_event("a", model="m-answered", tier="t-answered", output="A1", cost_usd=0.3, cached=True))
    journal(
        Event(
            "result",
            2.0,
            "a",
            1,
            {"purpose": "judge", "ok": True, "output": "{}", "model": "judge", "tier": "fast", "digest": "dig-j"},
        )
    )
    journal(issue_event("b"))
    journal(result_event("b", ok=False, output=None, error="boom"))  # a failure is never recalled
    journal(issue_event("c"))
    journal(result_event("c", output="first"))
    journal(issue_event("c"))
    journal(result_event("c", output="latest"))  # the latest of the same key wins
    found = recall(db, journal.run_id)
    assert set(found) == {("a", 1, "call"), ("a", 1, "judge"), ("c", 1, "call")}
    a = found[("a", 1, "call")]
    assert (a.model, a.tier, a.digest) == ("m-issued", "t-issued", "dig-a")  # the request it answered
    m = a.result
    assert (m.station, m.version, m.ok, m.result.output, m.result.model, m.result.tier) == (
        "a",
        1,
        True,
        "A1",
        "m-answered",
        "t-answered",
    )
    assert (
        m.result.prompt_tokens,
        m.result.completion_tokens,
        m.result.cost_usd,
        m.result.latency_s,
        m.result.cached,
    ) == (10, 5, 0.3, 0.5, True)
    judge = found[("a", 1, "judge")]
    assert (judge.model, judge.digest) == ("judge", "dig-j")  # a judge's request is in its result
    assert found[("c", 1, "call")].result.result.output == "latest"


def test_recall_pairs_a_result_with_the_issue_of_its_own_segment() -> None:
    db = connect()
    first = start_run(db)
    first(issue_event("a", digest="old"))
    first.finish("crashed", 0.0, {})
    second = Journal.resume(db, find_run(db, first.run_id))
    second(issue_event("a", digest="new"))
    second(result_event("a"))
    assert recall(db, first.run_id)[("a", 1, "call")].digest == "new"


def test_recall_skips_versions_a_caesura_squashed() -> None:
    db = connect()
    journal = start_run(db)
    for version in (1, 2, 3):
        journal(issue_event("a", version))
        journal(result_event("a", version, output=f"a{version}"))
    journal(issue_event("b"))
    journal(result_event("b"))
    journal(Event("caesura", 3.0, "a", 3, {"reason": "r", "checkpoint": 1, "squashed": {"a": 1}}))
    journal(Event("caesura", 4.0, "a", 3, {"reason": "r", "checkpoint": 2, "squashed": {"a": 2, "b": 0}}))
    assert squashed_versions(db, journal.run_id) == {"a": 2, "b": 0}
    found = recall(db, journal.run_id)
    assert set(found) == {("a", 3, "call"), ("b", 1, "call")}
    assert found[("a", 3, "call")].result.result.output == "a3"
    assert squashed_versions(db, "no-such-run") == {}


def test_recall_is_in_arrival_order_on_one_timeline_across_segments() -> None:
    from dataclasses import replace

    db = connect()
    first = start_run(db)
    first(Event("run_start", 0.0))
    for name, at in (("b", 1.0), ("a", 2.0), ("c", 3.0)):
        first(issue_event(name))
        first(replace(result_event(name), time_s=at))
    first.finish("crashed", 0.0, {})
    second = Journal.resume(db, find_run(db, first.run_id))
    second(Event("run_start", 0.0))
    # Segment 2 replayed segment 1 in no time; its clock runs 2.5 s behind the run's timeline.
    second(Event("replay_order", 0.01, None, 0, {"how": "drained", "offset_s": 2.5}))
    second(issue_event("d"))
    second(replace(result_event("d"), time_s=1.0))
    second(issue_event("a", 1))
    second(replace(result_event("a", output="again"), time_s=1.5))  # called again: it takes the later place
    found = recall(db, first.run_id)
    assert [key[0] for key in found] == ["b", "c", "d", "a"]
    assert [round(call.arrived_s, 6) for call in found.values()] == [1.0, 3.0, 3.5, 4.0]
