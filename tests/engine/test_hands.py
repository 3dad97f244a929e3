"""The conductor's hands on a running performer: pause, resume, and a caesura called by a person."""

from __future__ import annotations

from hct_cli.events import Event
from hct_cli.program.compile import Program
from tests.engine.fakes import Scripted, conduct, kinds, performer, score, settle, until


def _chain() -> Program:
    return score(
        {
            "a": {"prompt": "a"},
            "b": {"prompt": "b {{ cues.a }}", "cues": ["a"]},
            "c": {"prompt": "c {{ cues.b }}", "cues": ["b"]},
        }
    )


def test_pause_lets_the_call_in_flight_commit_and_issues_nothing_until_resume() -> None:
    provider = Scripted()
    provider.hold("a")
    events: list[Event] = []
    p = performer(_chain(), provider, events)

    async def cues() -> None:
        await until(lambda: [r.agent.name for r in provider.requests] == ["a"], "a is issued")
        p.pause()
        assert p.paused
        provider.release("a")
        await until(lambda: p.records["a"].status == "done", "a commits while paused")
        await settle()
        assert [r.agent.name for r in provider.requests] == ["a"], "b was issued while paused"
        assert p.records["b"].status == "waiting"
        p.resume()
        assert not p.paused

    result = conduct(p, cues)
    assert result.status == "completed"
    assert [r.agent.name for r in provider.requests] == ["a", "b", "c"]
    order = [e.kind for e in events if e.kind in ("pause", "resume") or (e.kind == "issue" and e.station == "b")]
    assert order == ["pause", "resume", "issue"]


def test_pause_and_resume_are_idempotent() -> None:
    provider = Scripted()
    provider.hold("a")
    events: list[Event] = []
    p = performer(_chain(), provider, events)

    async def cues() -> None:
        await until(lambda: bool(provider.requests), "a is issued")
        p.pause()
        p.pause()
        p.resume()
        p.resume()
        provider.release("a")

    assert conduct(p, cues).status == "completed"
    assert len(kinds(events, "pause")) == len(kinds(events, "resume")) == 1


def test_a_caesura_called_by_the_conductor_squashes_work_in_flight_and_skips_the_rest() -> None:
    provider = Scripted()
    provider.hold("b")
    events: list[Event] = []
    p = performer(_chain(), provider, events)

    async def cues() -> None:
        await until(lambda: bool(provider.of("b")), "b's call is in flight")
        assert p.caesura("enough")

    result = conduct(p, cues)
    assert result.status == "caesura"
    assert result.caesura is not None and result.caesura["agent"] is None
    assert result.caesura["squashed"] == {"a": 1, "b": 1}  # no downbeat: a's commit rolls back too
    assert p.records["b"].status == "squashed"
    assert p.records["c"].status == "skipped"
    assert ("b", 1) in provider.cancelled
    (caesura,) = kinds(events, "caesura")
    assert caesura.station is None and caesura.data["reason"] == "enough"


def test_a_caesura_after_the_run_ended_does_nothing() -> None:
    provider = Scripted()
    p = performer(_chain(), provider, [])
    result = conduct(p, settle)
    assert result.status == "completed"
    assert p.caesura() is False
    assert p.result().status == "completed"


def test_a_paused_run_can_still_be_stopped_by_a_caesura() -> None:
    provider = Scripted()
    provider.hold("a")
    p = performer(_chain(), provider, [])

    async def cues() -> None:
        await until(lambda: bool(provider.requests), "a is issued")
        p.pause()
        assert p.caesura()
        assert not p.paused

    assert conduct(p, cues).status == "caesura"


def test_a_run_paused_before_it_starts_issues_nothing_until_resumed() -> None:
    provider = Scripted()
    events: list[Event] = []
    p = performer(_chain(), provider, events)
    p.pause()

    async def cues() -> None:
        await settle()
        assert provider.requests == []
        assert p.records["a"].status == "waiting"
        p.resume()

    assert conduct(p, cues).status == "completed"
    assert [r.agent.name for r in provider.requests] == ["a", "b", "c"]
