"""What the conductor's keys act on: a journal's events on one time line, a replay of them, and
a live run of the performer (the ``Scripted`` provider of the engine tests).

Replays play at a high speed so the tests are quick; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest

from hct_cli.engine import Hands, Performer
from hct_cli.engine.gates import Gatekeeper
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.providers.human import HumanDesk
from hct_cli.tui.ensemble import Ensemble
from hct_cli.tui.stage import LiveStage, ReplayStage, journal_events
from tests.engine.fakes import Scripted, score, settle, until

pytestmark = pytest.mark.timeout(60)

FAST = 1000.0  # replay speed: a run of a few seconds plays in a few milliseconds


def program() -> Program:
    return score(
        {
            "a": {"prompt": "first"},
            "b": {"prompt": "second"},
            "c": {"prompt": "{{ cues.a }} {{ cues.b }}", "cues": ["a", "b"]},
        }
    )


def row(
    segment: int, at: float, kind: str, station: str | None = None, version: int | None = 0, **data: Any
) -> dict[str, Any]:
    """A journal row as ``hct_cli.store.runs.events_of`` yields it (``at`` in wall-clock seconds)."""
    return {"segment": segment, "seq": 0, "at": at, "kind": kind, "station": station, "version": version, "data": data}


class Recording(Ensemble):
    """An ensemble that keeps the events it was given, in order, and can act when one arrives."""

    def __init__(self, program: Program) -> None:
        super().__init__(program)
        self.seen: list[Event] = []
        self.on_event: Any = None

    def __call__(self, event: Event) -> None:
        self.seen.append(event)
        super().__call__(event)
        if self.on_event is not None:
            self.on_event(event)


def replayed_run() -> list[Event]:
    """A journaled run as ``hct replay`` plays it: a, b, then c, from run_start to run_end."""
    return [
        Event("run_start", 0.0, None, 0, {"run_id": "r-replay", "agents": 3}),
        Event("issue", 0.0, "a", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        Event("issue", 0.1, "b", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        Event("result", 0.5, "a", 1, {"prompt_tokens": 3, "completion_tokens": 5, "cost_usd": 0.001}),
        Event("cue", 0.5, "a", 1, {"cost_usd": 0.001, "keys": {}}),
        Event("result", 0.75, "b", 1, {"prompt_tokens": 3, "completion_tokens": 5, "cost_usd": 0.001}),
        Event("cue", 0.75, "b", 1, {"cost_usd": 0.001, "keys": {}}),
        Event("issue", 0.8, "c", 1, {"model": "gpt-4o-mini", "tier": "mid"}),
        Event("result", 1.5, "c", 1, {"prompt_tokens": 3, "completion_tokens": 5, "cost_usd": 0.001}),
        Event("cue", 1.5, "c", 1, {"cost_usd": 0.001, "keys": {}}),
        Event("run_end", 1.6, None, 0, {"status": "completed", "cost_usd": 0.003, "frontier_cost_usd": 0.004}),
    ]


# -- journal_events -----------------------------------------------------------------------------


def test_journal_events_put_every_segment_on_one_time_line_from_zero() -> None:
    rows = [
        row(1, 1_700_000_100.0, "run_start", run_id="r"),
        row(1, 1_700_000_100.25, "issue", "a", 1, model="m"),
        row(1, 1_700_000_102.0, "cue", "a", 1),
        row(1, 1_700_000_103.5, "run_end", status="interrupted"),
        # A resume a day later: its events follow the first segment's end, the day left out.
        row(2, 1_700_086_500.0, "run_start", run_id="r"),
        row(2, 1_700_086_500.0, "issue", "b", 1),
        row(2, 1_700_086_501.5, "cue", "b", 1),
        row(2, 1_700_086_502.0, "run_end", status="completed"),
    ]
    events = journal_events(rows)
    assert [e.time_s for e in events] == pytest.approx([0.0, 0.25, 2.0, 3.5, 3.5, 3.5, 5.0, 5.5])
    assert all(later.time_s >= earlier.time_s for earlier, later in pairwise(events))
    assert [(e.kind, e.station, e.version) for e in events] == [
        ("run_start", None, 0),
        ("issue", "a", 1),
        ("cue", "a", 1),
        ("run_end", None, 0),
        ("run_start", None, 0),
        ("issue", "b", 1),
        ("cue", "b", 1),
        ("run_end", None, 0),
    ]
    assert events[1].data == {"model": "m"} and events[3].data == {"status": "interrupted"}


def test_journal_events_never_go_back_when_a_later_segment_has_an_earlier_wall_clock() -> None:
    rows = [
        row(1, 500.0, "run_start"),
        row(1, 504.0, "cue", "a", 1),
        row(2, 100.0, "run_start"),  # the machine's clock was set back between the segments
        row(2, 101.0, "cue", "b", 1),
        row(3, 900.0, "run_start"),
        row(3, 900.5, "run_end"),
    ]
    times = [e.time_s for e in journal_events(rows)]
    assert times == pytest.approx([0.0, 4.0, 4.0, 5.0, 5.0, 5.5])


def test_journal_events_read_a_missing_version_as_zero() -> None:
    [event] = journal_events([row(1, 10.0, "skip", "c", None, reason="upstream")])
    assert (event.kind, event.time_s, event.station, event.version, dict(event.data)) == (
        "skip",
        0.0,
        "c",
        0,
        {"reason": "upstream"},
    )
    assert journal_events([]) == []


# -- ReplayStage --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_replay_plays_every_event_into_the_ensemble_in_order() -> None:
    events = replayed_run()
    ensemble = Recording(program())
    stage = ReplayStage(events, ensemble, speed=FAST)
    assert stage.live is False and not stage.paused and stage.position() == 0.0
    await stage.play()
    assert ensemble.seen == events
    assert {name: r.state for name, r in ensemble.agents.items()} == {"a": "done", "b": "done", "c": "done"}
    assert ensemble.run_id == "r-replay" and ensemble.finished and ensemble.status == "completed"
    assert (ensemble.spend_usd, ensemble.frontier_usd) == (0.003, 0.004)
    # Once it ended the replay's position is the last event's time, and so is the ensemble's clock.
    assert stage.position() == 1.6
    assert ensemble.now() == 1.6


@pytest.mark.anyio
async def test_a_replay_without_run_end_ends_at_its_last_event() -> None:
    events = replayed_run()[:-1]
    ensemble = Recording(program())
    stage = ReplayStage(events, ensemble, speed=FAST)
    await stage.play()
    assert ensemble.seen[:-1] == events, "every journaled event is played"
    # The journal ends without a run_end (a crash): the replay ends it, at its last event.
    assert ensemble.seen[-1].kind == "run_end" and ensemble.seen[-1].data == {"status": "crashed"}
    assert ensemble.finished and ensemble.status == "crashed"
    assert stage.position() == 1.5 and ensemble.now() == 1.5


@pytest.mark.anyio
async def test_a_replay_of_nothing_ends_at_zero() -> None:
    ensemble = Recording(program())
    stage = ReplayStage([], ensemble, speed=FAST)
    await stage.play()
    assert [e.kind for e in ensemble.seen] == ["run_end"] and stage.position() == 0.0


@pytest.mark.anyio
async def test_a_paused_replay_applies_no_event_until_resumed() -> None:
    events = replayed_run()
    ensemble = Recording(program())
    stage = ReplayStage(events, ensemble, speed=FAST)

    def pause_at_a_cue(event: Event) -> None:
        if event.kind == "cue" and event.station == "a":
            stage.pause()

    ensemble.on_event = pause_at_a_cue
    task = asyncio.create_task(stage.play())
    await until(lambda: stage.paused, "the replay pauses at a's cue")
    held = len(ensemble.seen)
    assert ensemble.seen[-1].kind == "cue" and ensemble.seen[-1].station == "a"
    assert ensemble.paused
    position = stage.position()
    await settle(100)
    await asyncio.sleep(0.05)
    assert len(ensemble.seen) == held, "a paused replay went on"
    assert stage.position() == position and not task.done()
    stage.pause()  # pausing twice changes nothing
    assert stage.paused
    ensemble.on_event = None
    stage.resume()
    assert not stage.paused and not ensemble.paused
    await task
    assert ensemble.seen == events
    assert stage.position() == 1.6


@pytest.mark.anyio
async def test_a_replay_paused_before_it_starts_waits_for_resume() -> None:
    events = replayed_run()
    ensemble = Recording(program())
    stage = ReplayStage(events, ensemble, speed=FAST)
    stage.pause()
    assert stage.paused and ensemble.paused
    task = asyncio.create_task(stage.play())
    await settle(100)
    await asyncio.sleep(0.02)
    assert ensemble.seen == [] and ensemble.revision == 0
    stage.resume()
    stage.resume()  # resuming twice changes nothing
    await task
    assert ensemble.seen == events


def test_a_replay_cannot_decide_or_stop_the_run() -> None:
    stage = ReplayStage(replayed_run(), Recording(program()), speed=FAST)
    decided = stage.decide("a", 1, "approve")
    stopped = stage.caesura()
    assert isinstance(decided, str) and "replay" in decided
    assert isinstance(stopped, str) and "replay" in stopped


# -- LiveStage ----------------------------------------------------------------------------------


def live(provider: Any, prog: Program | None = None, desk: HumanDesk | None = None) -> tuple[LiveStage, Ensemble]:
    """A live stage on a run of ``prog`` (three agents by default) that ``provider`` answers."""
    prog = prog or program()
    ensemble = Ensemble(prog)
    gates = Gatekeeper(tiers=prog.tiers, desk=desk) if desk is not None else None
    performer = Performer(prog, Hands(lambda spec: provider, gates=gates), observers=[ensemble])
    return LiveStage(performer, desk), ensemble


@pytest.mark.anyio
async def test_a_live_stage_plays_the_run_and_keeps_its_result() -> None:
    stage, ensemble = live(Scripted())
    assert stage.live is True and stage.result is None
    await stage.play()
    result = stage.result
    assert result is not None and result.status == "completed"
    assert {name: record.status for name, record in result.agents.items()} == {"a": "done", "b": "done", "c": "done"}
    assert ensemble.finished and ensemble.status == "completed"
    assert ensemble.spend_usd == pytest.approx(result.cost_usd) == pytest.approx(0.003)
    assert stage.caesura() == "the run has already ended"


@pytest.mark.anyio
async def test_cancelling_a_live_play_leaves_an_interrupted_result() -> None:
    provider = Scripted()
    provider.hold("b")
    stage, ensemble = live(provider)
    task = asyncio.create_task(stage.play())
    await until(lambda: ensemble.agents["a"].state == "done", "a commits")
    await until(lambda: ("b", 1) in [(r.agent.name, r.version) for r in provider.requests], "b is called")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    result = stage.result
    assert result is not None and result.status == "interrupted"
    assert result.agents["a"].status == "done"
    assert result.agents["c"].status == "waiting"
    await until(lambda: provider.cancelled == [("b", 1)], "b's call is cancelled")


@pytest.mark.anyio
async def test_a_live_stage_pauses_and_resumes_the_performer() -> None:
    provider = Scripted()
    stage, ensemble = live(provider)
    stage.pause()
    assert stage.paused and ensemble.paused
    task = asyncio.create_task(stage.play())
    await settle(100)
    assert provider.requests == [] and not task.done()
    assert ensemble.agents["a"].state == "ready"
    stage.resume()
    assert not stage.paused
    await task
    assert stage.result is not None and stage.result.status == "completed"


@pytest.mark.anyio
async def test_a_live_caesura_stops_the_run() -> None:
    provider = Scripted()
    provider.hold("b")
    stage, ensemble = live(provider)
    assert stage.caesura() == "the run has already ended", "a run not started cannot be stopped"
    task = asyncio.create_task(stage.play())
    await until(lambda: ensemble.agents["b"].state == "running", "b runs")
    assert stage.caesura() is None
    await task
    result = stage.result
    assert result is not None and result.status == "caesura"
    assert result.caesura is not None and result.caesura["agent"] is None
    assert ensemble.status == "caesura" and ensemble.agents["c"].state == "skipped"
    assert stage.caesura() == "the run has already ended"


def test_a_live_stage_without_a_desk_takes_no_decision() -> None:
    stage, _ = live(Scripted())
    assert stage.desk is None
    assert stage.decide("a", 1, "approve") == "this run takes no decisions"


@pytest.mark.anyio
async def test_a_live_stage_with_a_desk_passes_a_persons_verdict_to_the_fermata() -> None:
    prog = score(
        {
            "draft": {"prompt": "draft it", "fermata": {"check": {"human": True}, "timeout_s": 60, "retries": 0}},
            "publish": {"prompt": "publish {{ cues.draft }}", "cues": ["draft"]},
        }
    )
    desk = HumanDesk("r-desk", None, poll_s=0.01)
    stage, ensemble = live(Scripted(), prog, desk)
    assert stage.desk is desk
    task = asyncio.create_task(stage.play())
    await until(lambda: "draft" in ensemble.pending, "draft waits for a person", rounds=20_000)
    assert ensemble.agents["draft"].state == "held" and ensemble.agents["publish"].state == "waiting"
    assert stage.decide("draft", 1, "approve") is None
    await task
    assert stage.result is not None and stage.result.status == "completed"
    assert ensemble.pending == {}
    assert {name: r.state for name, r in ensemble.agents.items()} == {"draft": "done", "publish": "done"}
