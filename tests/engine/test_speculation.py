"""Speculation past a fermata: dependents fire on a held result, commit after it, and are
squashed (their buffered or in-flight work dropped) when its gate fails.

A ``gatechecks:held`` python gate waits until the test decides it, so each test orders the
gate's verdict against the dependents' calls. The last tests run random-ish scores under slow
simulated judges and check the invariant: nothing committed was computed from a squashed
version.
"""

from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import pytest

from hct_cli.engine import EngineOptions, Performer, RunResult
from hct_cli.engine.gates import Gatekeeper
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.providers.human import HumanDesk
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.store.cache import Predictors
from hct_cli.store.home import connect
from tests.engine.fakes import (
    Recording,
    Scripted,
    conduct,
    eventually,
    held_gates,
    index_of,
    kinds,
    performer,
    score,
    seen,
)
from tests.engine.fakes import gatechecks as gatechecks  # the autouse fixture

pytestmark = pytest.mark.timeout(120)


# -- helpers ------------------------------------------------------------------------------------


def chain(speculate: bool | str, retries: int = 2) -> Program:
    """a (held python gate) -> b -> c."""
    return score(
        {
            "a": {
                "prompt": "draft",
                "speculate": speculate,
                "fermata": {"check": {"python": "gatechecks:held"}, "retries": retries},
            },
            "b": {"prompt": "review {{ cues.a }}", "cues": ["a"]},
            "c": {"prompt": "publish {{ cues.b }}", "cues": ["b"]},
        }
    )


def perform_chain(
    provider: Scripted, speculate: bool | str = True, retries: int = 2, **options: Any
) -> tuple[list[Event], Performer]:
    """The events and a performer of ``chain(speculate, retries)`` on ``provider``, running python checks."""
    events: list[Event] = []
    return events, performer(chain(speculate, retries), provider, events, allow_exec=True, **options)


async def b_issued_on_the_held_a(gatechecks: ModuleType, provider: Scripted) -> None:
    await held_gates(gatechecks, "<a@1>")
    await eventually(lambda: len(provider.of("b")) == 1, "b issued on the held a@1")


# -- hits -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("b_finishes_first", [True, False], ids=["b_buffered", "b_in_flight"])
def test_dependents_issue_before_the_gate_and_commit_after_the_producer(
    gatechecks: ModuleType, b_finishes_first: bool
) -> None:
    provider = Scripted()
    provider.hold("b")
    events, p = perform_chain(provider)

    async def cues() -> None:
        await b_issued_on_the_held_a(gatechecks, provider)
        assert p.records["a"].status == "held"
        assert provider.of("b")[0].context["cues"]["a"] == "<a@1>"
        if b_finishes_first:
            provider.release("b")
            await eventually(lambda: p.records["b"].status == "speculative", "b's result is buffered")
            await asyncio.sleep(0.01)
            assert not seen(events, "cue", "b"), "b committed before a"
            assert provider.of("c") == [], "c fired on b's uncommitted result"
            gatechecks.resolve(True)
        else:
            gatechecks.resolve(True)
            await eventually(lambda: seen(events, "cue", "a"), "a committed")
            provider.release("b")

    result = conduct(p, cues)
    assert result.status == "completed"
    assert index_of(events, "issue", "b") < index_of(events, "gate", "a")
    assert index_of(events, "cue", "a") < index_of(events, "cue", "b") < index_of(events, "issue", "c")
    assert [e.data["on"] for e in kinds(events, "speculate", "b")] == ["a@1"]
    assert not seen(events, "speculate", "c")
    assert result.speculated == 1
    assert (result.squashes, result.squashed_cost_usd) == (0, 0.0)
    assert not kinds(events, "squash")
    assert result.agents["b"].operands == {"a": 1} and result.agents["b"].calls == 1
    assert result.agents["c"].operands == {"b": 1}


# -- squashes -------------------------------------------------------------------------------------


def test_a_failed_gate_squashes_buffered_dependents_and_they_refire_on_the_retry(gatechecks: ModuleType) -> None:
    provider = Scripted(cost=0.25)
    events, p = perform_chain(provider)

    async def cues() -> None:
        await held_gates(gatechecks, "<a@1>")
        await eventually(lambda: p.records["b"].status == "speculative", "b's result on a@1 is buffered")
        gatechecks.resolve(False, "misses the point")
        await held_gates(gatechecks, "<a@2>")
        await eventually(lambda: p.records["b"].status == "speculative", "b ran again, on a@2")
        assert [r.context["cues"]["a"] for r in provider.of("b")] == ["<a@1>", "<a@2>"]
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "completed"
    [squash] = kinds(events, "squash")
    assert (squash.station, squash.version, squash.data["on"]) == ("b", 1, "a@1")
    assert squash.data["cost_usd"] == pytest.approx(0.25)
    issues_of_a = [events.index(e) for e in kinds(events, "issue", "a")]
    assert issues_of_a[0] < events.index(squash) < issues_of_a[1]  # squashed before a@2 was issued
    assert result.squashes == 1
    assert result.squashed_cost_usd == pytest.approx(0.25)
    assert result.speculated == 1  # the second speculation hit
    a, b, c = (result.agents[n] for n in "abc")
    assert (a.version, a.status) == (2, "done")
    assert "misses the point" in provider.of("a")[1].prompt
    assert [m.result.output for m in b.squashed] == ["<b@1>"]
    assert (b.version, b.output, b.operands) == (2, "<b@2>", {"a": 2})
    assert b.cost_usd == pytest.approx(0.5)  # the squashed call was paid for too
    # c never ran on squashed work.
    assert [r.context["cues"]["b"] for r in provider.of("c")] == ["<b@2>"]
    assert c.operands == {"b": 2}
    assert [e.version for e in kinds(events, "cue", "b")] == [2]
    assert [e.data["on"] for e in kinds(events, "speculate", "b")] == ["a@1", "a@2"]


def test_a_failed_gate_cancels_a_dependent_still_in_flight(gatechecks: ModuleType) -> None:
    provider = Scripted()
    provider.hold("b")
    events, p = perform_chain(provider)

    async def cues() -> None:
        await b_issued_on_the_held_a(gatechecks, provider)  # and held in flight
        gatechecks.resolve(False)
        await eventually(lambda: ("b", 1) in provider.cancelled, "b@1 was cancelled")
        await held_gates(gatechecks, "<a@2>")
        provider.release("b")
        await eventually(lambda: len(provider.of("b")) == 2, "b ran again")
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "completed"
    assert ("b", 1) not in provider.finished
    [squash] = kinds(events, "squash", "b")
    assert squash.data["cost_usd"] == 0.0
    assert (result.squashes, result.squashed_cost_usd) == (1, 0.0)
    b = result.agents["b"]
    assert b.squashed == [] and (b.version, b.operands) == (2, {"a": 2})
    assert result.agents["c"].operands == {"b": 2}


def test_a_dependent_of_two_held_producers_keeps_the_one_that_commits(gatechecks: ModuleType) -> None:
    gate = {"check": {"python": "gatechecks:held"}, "retries": 2}
    program = score(
        {
            "a": {"prompt": "a", "speculate": True, "fermata": gate},
            "b": {"prompt": "b", "speculate": True, "fermata": gate},
            "d": {"prompt": "{{ cues.a }} {{ cues.b }}", "cues": ["a", "b"]},
        }
    )
    provider = Scripted()
    events: list[Event] = []
    p = performer(program, provider, events, allow_exec=True)

    async def cues() -> None:
        await held_gates(gatechecks, "<a@1>", "<b@1>")
        await eventually(lambda: p.records["d"].status == "speculative", "d ran on both held results")
        gatechecks.resolve(True, output="<a@1>")
        await eventually(lambda: seen(events, "cue", "a"), "a@1 committed")
        assert p.records["d"].status == "speculative", "d committed while b@1 was still held"
        gatechecks.resolve(False, output="<b@1>")
        await held_gates(gatechecks, "<b@2>")
        await eventually(lambda: len(provider.of("d")) == 2, "d ran again")
        gatechecks.resolve(True, output="<b@2>")

    result = conduct(p, cues)
    assert result.status == "completed"
    d = result.agents["d"]
    assert [dict(r.context["cues"]) for r in provider.of("d")] == [
        {"a": "<a@1>", "b": "<b@1>"},
        {"a": "<a@1>", "b": "<b@2>"},
    ]
    assert (d.version, d.operands) == (2, {"a": 1, "b": 2})
    assert [m.version for m in d.squashed] == [1]
    assert [(e.version, e.data["on"]) for e in kinds(events, "squash", "d")] == [(1, "b@1")]
    assert result.squashes == 1
    assert result.speculated == 2  # a@1 and b@2 were hits
    assert [e.version for e in kinds(events, "cue", "d")] == [2]


def test_speculation_past_a_person_squashes_on_reject_and_hits_on_approve() -> None:
    program = score(
        {
            "a": {
                "prompt": "a",
                "speculate": True,
                "fermata": {"check": {"human": True}, "timeout_s": 60, "retries": 1},
            },
            "b": {"prompt": "{{ cues.a }}", "cues": ["a"]},
        }
    )
    desk = HumanDesk("run-spec", poll_s=0.005)
    provider = Scripted()
    events: list[Event] = []
    p = performer(program, provider, events, gates=Gatekeeper(tiers=program.tiers, desk=desk))

    async def cues() -> None:
        await eventually(lambda: "a" in desk.waiting and p.records["b"].status == "speculative", "b ran on a@1")
        desk.decide("a", 1, "reject", "not this one")
        await eventually(lambda: "a" in desk.waiting and len(provider.of("b")) == 2, "b ran on a@2")
        desk.decide("a", 2, "approve")

    result = conduct(p, cues)
    assert result.status == "completed"
    assert (result.squashes, result.speculated) == (1, 1)
    assert [r.context["cues"]["a"] for r in provider.of("b")] == ["<a@1>", "<a@2>"]
    assert result.agents["b"].operands == {"a": 2}
    assert "rejected: not this one" in provider.of("a")[1].prompt


def test_a_gate_that_finally_fails_squashes_dependents_and_skips_them(gatechecks: ModuleType) -> None:
    provider = Scripted()
    _, p = perform_chain(provider, retries=0)

    async def cues() -> None:
        await eventually(lambda: p.records["b"].status == "speculative", "b's result on a@1 is buffered")
        gatechecks.resolve(False)

    result = conduct(p, cues)
    assert result.status == "failed"
    assert result.squashes == 1
    assert [result.agents[n].status for n in "abc"] == ["failed", "skipped", "skipped"]
    assert result.agents["b"].output is None
    assert provider.of("c") == []


def test_a_dependent_that_fails_on_a_squashed_version_is_squashed_not_failed(gatechecks: ModuleType) -> None:
    """A failure computed from a result that never commits is squashed with it (it is
    speculative work like any other) and the dependent re-fires on the retry."""
    provider = Scripted(fail=lambda r: r.agent.name == "b" and r.context["cues"]["a"] == "<a@1>")
    _, p = perform_chain(provider)

    async def scenario() -> RunResult:
        task = asyncio.create_task(p.run())
        await held_gates(gatechecks, "<a@1>")
        await eventually(lambda: ("b", 1) in provider.finished, "b failed on the held a@1")
        await asyncio.sleep(0.01)
        gatechecks.resolve(False)
        await eventually(lambda: gatechecks.pending() == ["<a@2>"] or task.done(), "a@2's gate is pending")
        if not task.done():
            gatechecks.resolve(True)
        return await task

    result = asyncio.run(scenario())
    statuses = {name: (r.status, r.version, r.error) for name, r in result.agents.items()}
    assert (result.status, statuses) == (
        "completed",
        {"a": ("done", 2, None), "b": ("done", 2, None), "c": ("done", 1, None)},
    )
    assert result.agents["b"].operands == {"a": 2} and result.agents["c"].operands == {"b": 2}
    assert result.squashes == 1


def test_a_speculative_failure_counts_once_the_result_it_used_commits(gatechecks: ModuleType) -> None:
    """The other side: when the held result does commit, the dependent's failure is real."""
    provider = Scripted(fail=lambda r: r.agent.name == "b")
    events, p = perform_chain(provider)

    async def cues() -> None:
        await held_gates(gatechecks, "<a@1>")
        await eventually(lambda: ("b", 1) in provider.finished, "b failed on the held a@1")
        await asyncio.sleep(0.01)
        assert not seen(events, "fail", "b"), "b's failure was final before a@1 committed"
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "failed"
    assert [result.agents[n].status for n in "abc"] == ["done", "failed", "skipped"]
    assert result.agents["b"].error == "b@1 could not make sense of its input"
    assert index_of(events, "cue", "a") < index_of(events, "fail", "b")
    assert result.squashes == 0 and provider.of("c") == []


def test_without_speculation_dependents_wait_for_the_gate(gatechecks: ModuleType) -> None:
    provider = Scripted()
    events, p = perform_chain(provider, False)

    async def cues() -> None:
        await held_gates(gatechecks, "<a@1>")
        await asyncio.sleep(0.02)
        assert provider.of("b") == [], "b fired on a held result without speculate"
        gatechecks.resolve(False)
        await held_gates(gatechecks, "<a@2>")
        await asyncio.sleep(0.02)
        assert provider.of("b") == []
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "completed"
    assert not kinds(events, "speculate") and not kinds(events, "squash")
    assert (result.speculated, result.squashes) == (0, 0)
    gates = kinds(events, "gate", "a")
    assert events.index(gates[-1]) < index_of(events, "issue", "b")
    assert result.agents["b"].operands == {"a": 2} and result.agents["b"].calls == 1


def test_a_caesura_squashes_speculative_work_and_cancels_the_held_gate(gatechecks: ModuleType) -> None:
    program = score(
        {
            "a": {
                "prompt": "a",
                "writes": ["x"],
                "speculate": True,
                "fermata": {"check": {"python": "gatechecks:held"}},
            },
            "b": {"prompt": "b {{ cues.a }}", "cues": ["a"], "writes": ["y"]},
            "f": {"prompt": "f", "fermata": {"check": {"contains": "good"}, "on_fail": "caesura"}},
        },
        state={"x": {"initial": "x0"}, "y": {"initial": "y0"}},
    )
    provider = Scripted()
    provider.hold("f")
    events: list[Event] = []
    p = performer(program, provider, events, allow_exec=True)

    async def cues() -> None:
        await eventually(lambda: p.records["b"].status == "speculative", "b's result on a@1 is buffered")
        provider.release("f")

    result = conduct(p, cues)
    assert result.status == "caesura"
    assert gatechecks.pending() == []
    assert result.state == {"x": "x0", "y": "y0"}
    assert {n: r.status for n, r in result.agents.items()} == {"a": "squashed", "b": "squashed", "f": "squashed"}
    assert [m.result.output for m in result.agents["a"].squashed] == ["<a@1>"]
    assert [m.result.output for m in result.agents["b"].squashed] == ["<b@1>"]
    assert not seen(events, "cue", "a") and not seen(events, "cue", "b")
    assert result.caesura is not None and result.caesura["squashed"] == {"a": 1, "b": 1, "f": 1}


# -- speculate: auto ------------------------------------------------------------------------------


def decide_gates(p: Performer, provider: Scripted, verdicts: list[bool], gatechecks: ModuleType) -> list[int]:
    """Run ``p``, deciding a's gates in turn; how many calls b had had when each gate was decided."""
    b_calls: list[int] = []

    async def cues() -> None:
        for version, passed in enumerate(verdicts, start=1):
            await held_gates(gatechecks, f"<a@{version}>")
            await asyncio.sleep(0.01)  # time for b to fire, if it is going to
            b_calls.append(len(provider.of("b")))
            gatechecks.resolve(passed)

    conduct(p, cues)
    return b_calls


def test_speculate_auto_stops_speculating_once_the_counter_falls_below_two(gatechecks: ModuleType) -> None:
    predictors = Predictors()
    assert predictors.predict("t/a")  # a new gate is speculated on
    provider = Scripted()
    events, p = perform_chain(provider, "auto", predictors=predictors)
    b_calls = decide_gates(p, provider, [False, False, True], gatechecks)
    result = p.result()
    assert result.status == "completed"
    # Only a@1 was speculated on (counter 2); after its failure (1) and the next (0) b waited.
    assert b_calls == [1, 1, 1]
    assert [e.data["on"] for e in kinds(events, "speculate", "b")] == ["a@1"]
    assert result.squashes == 1 and result.speculated == 0
    assert predictors.counters == {"t/a": 1}
    assert not predictors.predict("t/a")
    last_gate = kinds(events, "gate", "a")[-1]
    last_issue = kinds(events, "issue", "b")[-1]
    assert last_gate.version == 3 and events.index(last_gate) < events.index(last_issue)
    assert result.agents["b"].operands == {"a": 3} and len(provider.of("b")) == 2


def test_speculate_auto_counters_persist_across_runs_in_the_database(gatechecks: ModuleType) -> None:
    db = connect()
    try:
        # Run 1: a new gate is speculated on; two failures take its counter from 2 to 0, a pass to 1.
        p1s = Scripted()
        first, p1 = perform_chain(p1s, "auto", predictors=Predictors(db))
        assert decide_gates(p1, p1s, [False, False, True], gatechecks) == [1, 1, 1]
        assert [e.data["on"] for e in kinds(first, "speculate")] == ["a@1"]
        assert dict(db.execute("SELECT gate, counter FROM predictors")) == {"t/a": 1}

        # Run 2, new predictors on a new connection: the counter (1) says wait, from the first version.
        gatechecks.reset()
        again = connect()
        p2s = Scripted()
        second, p2 = perform_chain(p2s, "auto", predictors=Predictors(again))
        assert decide_gates(p2, p2s, [True], gatechecks) == [0]
        again.close()
        assert not kinds(second, "speculate")
        assert index_of(second, "gate", "a") < index_of(second, "issue", "b")
        assert dict(db.execute("SELECT gate, counter FROM predictors")) == {"t/a": 2}

        # Run 3: back at 2, it speculates again.
        gatechecks.reset()
        p3s = Scripted()
        third, p3 = perform_chain(p3s, "auto", predictors=Predictors(db))
        assert decide_gates(p3, p3s, [True], gatechecks) == [1]
        assert [e.data["on"] for e in kinds(third, "speculate")] == ["a@1"]
        assert index_of(third, "issue", "b") < index_of(third, "gate", "a")

        # Without a database nothing carries over: a fresh counter speculates on a@1.
        gatechecks.reset()
        p4s = Scripted()
        fresh, p4 = perform_chain(p4s, "auto", predictors=Predictors())
        assert decide_gates(p4, p4s, [False, True], gatechecks) == [1, 1]
        assert [e.data["on"] for e in kinds(fresh, "speculate")] == ["a@1"]
    finally:
        db.close()


# -- the invariant --------------------------------------------------------------------------------


def simulated(seed: int) -> Recording:
    """The simulated provider, keeping every request."""
    return Recording(SimulatedProvider(seed, time_scale=0.02))


def judged(pass_rate: float, **more: Any) -> dict[str, Any]:
    return {
        "simulate": {"pass_rate": pass_rate, "latency_ms": [5, 60]},
        "fermata": {"check": {"judge": {"criteria": "is right"}}, "retries": 4},
        **more,
    }


def lattice() -> Program:
    fast = {"simulate": {"latency_ms": [1, 40]}}
    return score(
        {
            "a": {"prompt": "a", "speculate": True, **judged(0.5)},
            "b": {"prompt": "b", "speculate": True, **judged(0.6)},
            "c": {"prompt": "c {{ cues.a }}", "cues": ["a"], "speculate": True, **judged(0.5)},
            "d": {"prompt": "d {{ cues.a }} {{ cues.b }}", "cues": ["a", "b"], **fast},
            "e": {"prompt": "e {{ cues.c }} {{ cues.d }}", "cues": ["c", "d"], "attacca": True, **judged(0.5)},
            "f": {"prompt": "f {{ cues.d }}", "cues": ["d"], "speculate": "auto", **judged(0.4)},
            "g": {"prompt": "g {{ cues.e }} {{ cues.f }}", "cues": ["e", "f"], **fast},
            "h": {"prompt": "h {{ cues.b }}", "cues": ["b"], "attacca": True, **fast},
        }
    )


def check_invariant(program: Program, result: RunResult, provider: Recording, events: list[Event]) -> None:
    cue_at = {(e.station, e.version): i for i, e in enumerate(events) if e.kind == "cue"}
    for name, record in result.agents.items():
        if record.status != "done":
            assert record.status in ("failed", "skipped"), (name, record.status, record.error)
            continue
        tags = program.stations[name].tags
        assert set(record.operands) == set(tags), name
        request = provider.request(name, record.version)
        for tag in tags:
            producer = result.agents[tag]
            assert producer.status == "done", (name, tag)
            # The operand it committed with is the producer's committed version...
            assert record.operands[tag] == producer.version, (name, tag, record.operands, producer.version)
            # ...and the call whose result it committed was rendered from that version's output.
            if "cues" in request.context:  # (a prompt without a template gets no context)
                assert request.context["cues"][tag] == producer.output, (name, tag)
            # The producer committed first.
            assert cue_at[(tag, producer.version)] < cue_at[(name, record.version)], (name, tag)
        # Only the last version of an agent commits.
        assert [v for (s, v) in cue_at if s == name] == [record.version], name
    squashes = kinds(events, "squash")
    assert result.squashes == len(squashes)
    assert result.squashed_cost_usd == pytest.approx(sum(e.data["cost_usd"] for e in squashes))
    assert result.squashed_cost_usd == pytest.approx(
        sum(m.result.cost_usd for r in result.agents.values() for m in r.squashed)
    )
    assert result.speculated == sum(1 for e in kinds(events, "speculate")) - result.squashes


def test_no_committed_result_was_computed_from_a_squashed_version() -> None:
    program = lattice()
    totals = {"squashes": 0, "speculated": 0, "squashed_cost": 0.0, "failed": 0}
    for seed in range(24):
        provider = simulated(seed)
        events: list[Event] = []
        result = asyncio.run(performer(program, provider, events, allow_exec=True, predictors=Predictors()).run())
        assert result.status in ("completed", "failed"), (seed, result.status)
        check_invariant(program, result, provider, events)
        totals["squashes"] += result.squashes
        totals["speculated"] += result.speculated
        totals["squashed_cost"] += result.squashed_cost_usd
        totals["failed"] += result.status == "failed"
    # The seeds exercised what the invariant is about: hits, squashes and paid squashed work.
    assert totals["squashes"] > 0 and totals["speculated"] > 0 and totals["squashed_cost"] > 0, totals


@pytest.mark.parametrize("dispatch", ["reactive", "batch", "sequential"])
def test_the_invariant_holds_under_every_dispatch_policy(dispatch: str) -> None:
    program = lattice()
    squashes = 0
    for seed in range(8):
        provider = simulated(seed)
        events: list[Event] = []
        p = performer(
            program,
            provider,
            events,
            allow_exec=True,
            predictors=Predictors(),
            options=EngineOptions(dispatch=dispatch),
        )
        result = asyncio.run(p.run())
        assert result.status in ("completed", "failed"), (seed, result.status)
        check_invariant(program, result, provider, events)
        squashes += result.squashes
    assert squashes > 0


def caesura_lattice() -> Program:
    fast = {"simulate": {"latency_ms": [1, 40]}}

    def judged_caesura(rate: float, **more: Any) -> dict[str, Any]:
        return {
            "simulate": {"pass_rate": rate, "latency_ms": [5, 80]},
            "fermata": {"check": {"judge": {"criteria": "is right"}}, "on_fail": "caesura"},
            **more,
        }

    return score(
        {
            "a": {"prompt": "a", "speculate": True, "writes": ["x"], **judged(0.6)},
            "b": {"prompt": "b", "appends": ["log"], "speculate": True, **judged_caesura(0.85)},
            "c": {"prompt": "c {{ cues.a }}", "cues": ["a"], "writes": ["y"], "appends": ["log"], **fast},
            "d": {"prompt": "checkpoint", "downbeat": True, "writes": ["z"], **fast},
            "e": {"prompt": "e {{ cues.d }}", "cues": ["d"], "writes": ["x"], "speculate": True, **judged(0.5)},
            "f": {"prompt": "f {{ cues.e }}", "cues": ["e"], "appends": ["log"], "attacca": True, **fast},
            "g": {"prompt": "g {{ cues.d }}", "cues": ["d"], "writes": ["y"], **judged_caesura(0.7)},
            "h": {"prompt": "h", "writes": ["w"], "vamp": {"until": {"contains": "never"}, "max": 4}, **fast},
            "i": {"prompt": "i {{ cues.f }} {{ cues.g }}", "cues": ["f", "g"], "appends": ["log"], **fast},
        },
        state={
            "x": {"initial": "x0"},
            "y": {"initial": "y0"},
            "z": {"initial": "z0"},
            "w": {"initial": "w0"},
            "log": {"initial": []},
        },
    )


def test_a_caesura_amid_speculation_leaves_exactly_the_last_checkpoint() -> None:
    program = caesura_lattice()
    initial = {"x": "x0", "y": "y0", "z": "z0", "w": "w0", "log": []}
    seen_checkpoints: set[int] = set()
    outcomes: set[str] = set()
    for seed in range(40):
        provider = simulated(seed)
        events: list[Event] = []
        p = performer(program, provider, events, allow_exec=True, predictors=Predictors())
        result = asyncio.run(p.run())
        outcomes.add(result.status)
        if result.status != "caesura":
            check_invariant(program, result, provider, events)
            continue
        assert result.caesura is not None
        downbeats = kinds(events, "downbeat")
        expected = downbeats[-1].data["state"] if downbeats else initial
        assert result.caesura["checkpoint"] == len(downbeats), seed
        assert result.state == expected, seed
        assert p.shared.state() == expected, seed
        seen_checkpoints.add(result.caesura["checkpoint"])
        for name, record in result.agents.items():
            assert record.status in ("done", "failed", "skipped", "squashed", "tacet"), (seed, name, record.status)
            if record.status == "squashed":
                assert result.caesura["squashed"][name] == record.version, (seed, name)
        after = [e for e in events[events.index(kinds(events, "caesura")[0]) :] if e.kind in ("cue", "issue")]
        assert after == [], (seed, after)  # nothing commits or issues once the run stopped
    assert seen_checkpoints == {0, 1} and {"caesura", "completed"} <= outcomes, (seen_checkpoints, outcomes)
