"""Signals: vamp, tacet_if, attacca, downbeat and caesura, through the whole perform loop.

Scores go through the real loader and compiler; calls go to a scripted fake provider whose
agents the test may hold in flight, so every assertion is about order and state, never time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest

from hct_cli.engine import Performer
from hct_cli.events import Event
from hct_cli.program.compile import Program
from tests.engine.fakes import Scripted, conduct, eventually, held_gates, index_of, kinds, performer, run, score, seen
from tests.engine.fakes import gatechecks as gatechecks  # the autouse fixture

pytestmark = pytest.mark.timeout(60)


# -- vamp ---------------------------------------------------------------------------------------


def test_each_vamp_pass_is_a_new_version_that_commits_its_writes_and_sees_the_last_output() -> None:
    program = score(
        {
            "a": {"prompt": "write", "writes": ["draft"], "vamp": {"until": {"contains": "DONE"}, "max": 5}},
            "b": {"prompt": "use {{ cues.a }}", "cues": ["a"], "reads": ["draft"]},
        },
        state={"draft": {"initial": "empty"}},
    )
    provider = Scripted({"a": ["v1", "v2", "v3 DONE", "v4 too many"]})
    events: list[Event] = []
    p = performer(program, provider, events)
    during: list[tuple[int, Any, int]] = []

    def watch(event: Event) -> None:
        if event.kind == "vamp":  # after the pass committed, before the next one runs
            during.append((event.version, p.shared.value("draft"), p.shared.directory.version("draft")))

    p.observers.append(watch)
    result = asyncio.run(p.run())

    assert result.status == "completed"
    a = result.agents["a"]
    assert (a.status, a.version, a.output, a.calls) == ("done", 3, "v3 DONE", 3)
    assert [m.result.output for m in a.earlier] == ["v1", "v2"]
    assert [m.version for m in a.earlier] == [1, 2]
    # Every pass committed its write: the state held pass v's output once pass v was done.
    assert during == [(1, "v1", 1), (2, "v2", 2)]
    assert result.state == {"draft": "v3 DONE"}
    assert p.shared.directory.version("draft") == 3
    assert [(e.version, e.data["iteration"]) for e in kinds(events, "vamp", "a")] == [(1, 1), (2, 2)]
    assert all(e.data["reason"] == "does not contain 'DONE'" for e in kinds(events, "vamp", "a"))
    # Each pass's prompt carries the output of the pass before it.
    first, second, third = provider.of("a")
    assert [r.version for r in (first, second, third)] == [1, 2, 3]
    assert "previous output" not in first.prompt
    assert "Your previous output (pass 1):\nv1\nImprove on it." in second.prompt
    assert "Your previous output (pass 2):\nv2\nImprove on it." in third.prompt
    assert "v1" not in third.prompt
    # The dependent waited for the last pass: one call, on a@3, and it read the last write.
    [b] = provider.of("b")
    assert b.context["cues"]["a"] == "v3 DONE" and b.context["state"]["draft"] == "v3 DONE"
    assert result.agents["b"].operands == {"a": 3}
    assert [e.version for e in kinds(events, "cue", "a")] == [3]
    assert index_of(events, "cue", "a") < index_of(events, "issue", "b")


def test_a_vamp_stops_at_max_and_commits_its_last_pass() -> None:
    program = score(
        {
            "a": {"prompt": "write", "vamp": {"until": {"contains": "DONE"}, "max": 3}},
            "b": {"prompt": "use {{ cues.a }}", "cues": ["a"]},
        }
    )
    provider, events, result = Scripted.perform(program)
    assert result.status == "completed"
    a = result.agents["a"]
    assert (a.status, a.version, a.output, a.calls) == ("done", 3, "<a@3>", 3)
    assert len(provider.of("a")) == 3
    assert [e.data["iteration"] for e in kinds(events, "vamp", "a")] == [1, 2]
    assert result.agents["b"].operands == {"a": 3}
    assert provider.of("b")[0].context["cues"]["a"] == "<a@3>"


def test_a_vamp_with_an_async_python_until_stops_when_it_passes(gatechecks: ModuleType) -> None:
    program = score(
        {
            "a": {"prompt": "write", "vamp": {"until": {"python": "gatechecks:async_has_done"}, "max": 6}},
            "b": {"prompt": "use {{ cues.a }}", "cues": ["a"]},
        }
    )
    provider, events, result = Scripted.perform(
        program, {"a": ["first", "second", "third DONE", "fourth"]}, allow_exec=True
    )
    assert gatechecks.seen == ["first", "second", "third DONE"]
    a = result.agents["a"]
    assert (a.status, a.version, a.output) == ("done", 3, "third DONE")
    assert [e.data["reason"] for e in kinds(events, "vamp", "a")] == ["gatechecks:async_has_done returned False"] * 2
    assert result.agents["b"].operands == {"a": 3}
    # Until the predicate decided, nothing downstream ran.
    assert provider.of("b")[0].context["cues"]["a"] == "third DONE"


# -- tacet_if -----------------------------------------------------------------------------------


def tacet_score(check: Mapping[str, Any]) -> Program:
    return score(
        {
            "a": {"prompt": "decide"},
            "b": {
                "prompt": "work on {{ cues.a }}",
                "cues": ["a"],
                "writes": ["x"],
                "tacet_if": {"cue": "a", **check},
            },
            "c": {"prompt": "after {{ cues.b }}", "cues": ["b"]},
        },
        state={"x": {"initial": "x0"}},
    )


TACET_CHECKS = pytest.mark.parametrize(
    "check", [{"contains": "skip"}, {"python": "gatechecks:async_says_skip"}], ids=["contains", "async_python"]
)


@TACET_CHECKS
def test_a_tacet_agent_does_not_run_and_its_tag_resolves_to_null(check: dict[str, Any]) -> None:
    provider, events, result = Scripted.perform(tacet_score(check), {"a": "please skip it"}, allow_exec=True)
    assert result.status == "completed"
    b = result.agents["b"]
    assert b.status == "tacet"
    assert provider.of("b") == [], "a tacet agent was called"
    assert b.output is None and b.cost_usd == 0 and b.calls == 0
    [tacet] = kinds(events, "tacet", "b")
    assert tacet.data["reason"]
    [c] = provider.of("c")
    assert dict(c.context["cues"]) == {"b": None}
    assert result.agents["c"].status == "done"
    assert result.agents["c"].operands == {"b": b.version}
    assert result.state == {"x": "x0"}, "a tacet agent wrote shared state"


@TACET_CHECKS
def test_an_agent_runs_when_its_tacet_check_fails(check: dict[str, Any]) -> None:
    provider, events, result = Scripted.perform(tacet_score(check), {"a": "go ahead"}, allow_exec=True)
    assert result.status == "completed"
    assert not seen(events, "tacet", "b")
    b = result.agents["b"]
    assert (b.status, b.output) == ("done", "<b@1>")
    assert provider.of("b")[0].context["cues"]["a"] == "go ahead"
    assert provider.of("c")[0].context["cues"]["b"] == "<b@1>"
    assert result.state == {"x": "<b@1>"}


def test_a_tacet_check_that_cannot_run_lets_the_agent_play(gatechecks: ModuleType) -> None:
    """Without --allow-exec a python tacet check fails, so the agent is not skipped."""
    program = tacet_score({"python": "gatechecks:async_says_skip"})
    provider = Scripted({"a": "please skip it"})
    result = run(program, provider)
    assert gatechecks.seen == []
    assert result.agents["b"].status == "done"
    assert len(provider.of("b")) == 1


# -- attacca ------------------------------------------------------------------------------------


def attacca_score() -> Program:
    return score(
        {
            "a": {"prompt": "draft", "fermata": {"check": {"python": "gatechecks:held"}, "retries": 2}},
            "b": {"prompt": "go on from {{ cues.a }}", "cues": ["a"], "attacca": True},
            "c": {"prompt": "wait for {{ cues.a }}", "cues": ["a"]},
        }
    )


def attacca_performer() -> tuple[Scripted, list[Event], Performer]:
    provider = Scripted()
    events: list[Event] = []
    return provider, events, performer(attacca_score(), provider, events, allow_exec=True)


async def b_ran_on_the_held_a(gatechecks: ModuleType, p: Performer) -> None:
    await held_gates(gatechecks, "<a@1>")
    await eventually(lambda: p.records["b"].status == "speculative", "b ran on the held a@1")


def test_an_attacca_dependent_starts_on_the_held_result_and_commits_after_it(gatechecks: ModuleType) -> None:
    provider, events, p = attacca_performer()

    async def cues() -> None:
        await b_ran_on_the_held_a(gatechecks, p)
        assert p.records["a"].status == "held"
        assert provider.of("b")[0].context["cues"]["a"] == "<a@1>"
        assert provider.of("c") == [], "c (no attacca) started before the gate"
        assert not seen(events, "cue", "b"), "b committed before the result it used"
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "completed"
    assert index_of(events, "issue", "b") < index_of(events, "gate", "a")
    assert index_of(events, "gate", "a") < index_of(events, "issue", "c")
    assert index_of(events, "cue", "a") < index_of(events, "cue", "b")
    assert [e.data["on"] for e in kinds(events, "speculate", "b")] == ["a@1"]
    assert not seen(events, "speculate", "c")
    assert result.agents["b"].operands == {"a": 1} and result.agents["b"].calls == 1
    assert result.speculated == 1 and result.squashes == 0


def test_an_attacca_dependent_is_squashed_when_the_gate_fails(gatechecks: ModuleType) -> None:
    provider, events, p = attacca_performer()

    async def cues() -> None:
        await b_ran_on_the_held_a(gatechecks, p)
        gatechecks.resolve(False, "too vague")
        await held_gates(gatechecks, "<a@2>")
        await eventually(lambda: len(provider.of("b")) == 2, "b ran again, on a@2")
        gatechecks.resolve(True)

    result = conduct(p, cues)
    assert result.status == "completed"
    [squash] = kinds(events, "squash", "b")
    assert squash.data["on"] == "a@1" and squash.version == 1
    assert result.squashes == 1
    assert result.squashed_cost_usd == pytest.approx(provider.cost)
    b = result.agents["b"]
    assert [m.version for m in b.squashed] == [1]
    assert (b.version, b.operands) == (2, {"a": 2})
    assert [r.context["cues"]["a"] for r in provider.of("b")] == ["<a@1>", "<a@2>"]
    assert [e.version for e in kinds(events, "cue", "b")] == [2]
    # c never saw the failed version.
    assert [r.context["cues"]["a"] for r in provider.of("c")] == ["<a@2>"]
    assert "too vague" in provider.of("a")[1].prompt


# -- downbeat -----------------------------------------------------------------------------------


def test_a_downbeat_waits_for_every_earlier_agent_and_checkpoints_shared_state() -> None:
    program = score(
        {
            "a": {"prompt": "a", "writes": ["x"]},
            "b": {"prompt": "b", "appends": ["log"]},
            "c": {"prompt": "c {{ cues.a }}", "cues": ["a"]},
            "d": {"prompt": "checkpoint", "downbeat": True},
            "e": {"prompt": "e {{ cues.d }}", "cues": ["d"], "writes": ["x"]},
        },
        state={"x": {"initial": "x0"}, "log": {"initial": ["start"]}},
    )
    provider = Scripted()
    provider.hold("b")
    events: list[Event] = []
    p = performer(program, provider, events)

    async def cues() -> None:
        await eventually(lambda: seen(events, "cue", "a") and seen(events, "cue", "c"), "a and c committed")
        await asyncio.sleep(0.01)
        assert provider.of("d") == [], "the downbeat started before b, declared earlier, committed"
        assert not seen(events, "downbeat", "d")
        provider.release("b")

    result = conduct(p, cues)
    assert result.status == "completed"
    [downbeat] = kinds(events, "downbeat", "d")
    assert downbeat.data["checkpoint"] == 1
    assert downbeat.data["state"] == {"x": "<a@1>", "log": ["start", "<b@1>"]}
    for name in ("a", "b", "c"):
        assert index_of(events, "cue", name) < events.index(downbeat)
    assert events.index(downbeat) < index_of(events, "issue", "d")
    assert result.state == {"x": "<e@1>", "log": ["start", "<b@1>"]}


# -- caesura ------------------------------------------------------------------------------------


def caesura_score() -> Program:
    return score(
        {
            "a": {"prompt": "a", "writes": ["x"]},
            "b": {"prompt": "b", "appends": ["log"]},
            "d": {"prompt": "checkpoint", "downbeat": True, "writes": ["y"]},
            "e": {"prompt": "e {{ cues.d }}", "cues": ["d"], "writes": ["x"], "appends": ["log"]},
            "g": {"prompt": "slow {{ cues.d }}", "cues": ["d"], "writes": ["z"]},
            "h": {
                "prompt": "gated {{ cues.d }}",
                "cues": ["d"],
                "writes": ["w"],
                "fermata": {"check": {"python": "gatechecks:held"}},
            },
            "f": {
                "prompt": "check {{ cues.e }}",
                "cues": ["e"],
                "fermata": {"check": {"contains": "good"}, "on_fail": "caesura"},
            },
            "after": {"prompt": "never {{ cues.f }}", "cues": ["f"]},
        },
        state={
            "x": {"initial": "x0"},
            "y": {"initial": "y0"},
            "z": {"initial": "z0"},
            "w": {"initial": "w0"},
            "log": {"initial": ["start"]},
        },
    )


def test_a_caesura_restores_exactly_the_last_downbeat_checkpoint_and_squashes_later_work(
    gatechecks: ModuleType,
) -> None:
    program = caesura_score()
    provider = Scripted({"f": "bad"})
    provider.hold("g", "f")
    events: list[Event] = []
    p = performer(program, provider, events, allow_exec=True)
    committed_after_checkpoint: dict[str, Any] = {}

    async def cues() -> None:
        await eventually(lambda: seen(events, "cue", "e"), "e committed after the checkpoint")
        await held_gates(gatechecks, "<h@1>")  # h is held at its gate
        await eventually(lambda: len(provider.of("g")) == 1, "g is in flight")
        committed_after_checkpoint.update(p.shared.state())
        provider.release("f")  # f fails its gate: caesura

    result = conduct(p, cues)
    checkpoint = {"x": "<a@1>", "y": "y0", "z": "z0", "w": "w0", "log": ["start", "<b@1>"]}
    # The state really moved after the checkpoint before the caesura rolled it back.
    assert committed_after_checkpoint == {**checkpoint, "x": "<e@1>", "y": "<d@1>", "log": ["start", "<b@1>", "<e@1>"]}

    assert result.status == "caesura"
    [downbeat] = kinds(events, "downbeat", "d")
    assert downbeat.data["checkpoint"] == 1
    assert downbeat.data["state"] == checkpoint
    assert result.state == checkpoint
    assert p.shared.state() == checkpoint
    # The directory's versions went back too: the checkpoint's lines, not just its values.
    assert {k: p.shared.directory.version(k) for k in checkpoint} == {"x": 1, "y": 0, "z": 0, "w": 0, "log": 1}

    agents = result.agents
    assert agents["a"].status == "done" and agents["b"].status == "done"
    for name in ("d", "e"):  # committed after the checkpoint
        assert agents[name].status == "squashed", name
        assert agents[name].error == "squashed by the caesura"
        assert [m.result.output for m in agents[name].squashed] == [f"<{name}@1>"]
        assert agents[name].output is None
    assert agents["f"].status == "squashed"
    assert agents["f"].error == "fermata failed: does not contain 'good'"
    assert agents["g"].status == "squashed" and ("g", 1) in provider.cancelled  # in flight: cancelled
    assert ("g", 1) not in provider.finished
    assert agents["h"].status == "squashed" and gatechecks.pending() == []  # its gate was cancelled
    assert agents["after"].status == "skipped"
    assert provider.of("after") == []
    assert result.caesura == {
        "agent": "f",
        "reason": "fermata failed: does not contain 'good'",
        "checkpoint": 1,
        "squashed": {"d": 1, "e": 1, "f": 1, "g": 1, "h": 1},
    }
    [caesura] = kinds(events, "caesura", "f")
    assert caesura.data["checkpoint"] == 1 and caesura.data["squashed"] == result.caesura["squashed"]


def test_a_caesura_rolls_back_to_the_last_of_several_downbeats() -> None:
    program = score(
        {
            "a": {"prompt": "a", "writes": ["x"]},
            "d1": {"prompt": "one", "downbeat": True, "writes": ["y"]},
            "b": {"prompt": "b {{ cues.d1 }}", "cues": ["d1"], "writes": ["x"]},
            "d2": {"prompt": "two", "downbeat": True},
            "c": {"prompt": "c {{ cues.d2 }}", "cues": ["d2"], "writes": ["y"]},
            "f": {
                "prompt": "f {{ cues.c }}",
                "cues": ["c"],
                "fermata": {"check": {"regex": "^ok$"}, "on_fail": "caesura"},
            },
        },
        state={"x": {"initial": "x0"}, "y": {"initial": "y0"}},
    )
    events: list[Event] = []
    result = run(program, Scripted(), events)
    assert result.status == "caesura"
    downbeats = kinds(events, "downbeat")
    assert [(e.station, e.data["checkpoint"]) for e in downbeats] == [("d1", 1), ("d2", 2)]
    assert downbeats[0].data["state"] == {"x": "<a@1>", "y": "y0"}
    assert downbeats[1].data["state"] == {"x": "<b@1>", "y": "<d1@1>"}
    assert result.state == downbeats[1].data["state"]
    assert result.caesura is not None and result.caesura["checkpoint"] == 2
    assert result.caesura["squashed"] == {"d2": 1, "c": 1, "f": 1}
    assert {n: r.status for n, r in result.agents.items()} == {
        "a": "done",
        "d1": "done",
        "b": "done",
        "d2": "squashed",
        "c": "squashed",
        "f": "squashed",
    }


def test_a_caesura_without_a_downbeat_restores_the_initial_state() -> None:
    program = score(
        {
            "a": {"prompt": "a", "writes": ["x"]},
            "b": {"prompt": "b", "appends": ["log"]},
            "f": {
                "prompt": "f {{ cues.a }} {{ cues.b }}",
                "cues": ["a", "b"],
                "fermata": {"check": {"regex": "^ok$"}, "on_fail": "caesura"},
            },
            "later": {"prompt": "later {{ cues.f }}", "cues": ["f"]},
        },
        state={"x": {"initial": {"nested": [1, 2]}}, "log": {"initial": []}},
    )
    events: list[Event] = []
    p = performer(program, Scripted(), events)
    result = asyncio.run(p.run())
    assert result.status == "caesura"
    assert not kinds(events, "downbeat")
    assert result.state == {"x": {"nested": [1, 2]}, "log": []}
    assert {k: p.shared.directory.version(k) for k in ("x", "log")} == {"x": 0, "log": 0}
    assert result.caesura == {
        "agent": "f",
        "reason": "fermata failed: no match for /^ok$/",
        "checkpoint": 0,
        "squashed": {"a": 1, "b": 1, "f": 1},
    }
    assert [result.agents[n].status for n in ("a", "b", "f", "later")] == ["squashed"] * 3 + ["skipped"]
