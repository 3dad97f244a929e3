"""The conductor driven by keys, as a person would, on real simulated runs (``App.run_test``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hct_cli.tui.app import FPS, Confirm
from hct_cli.tui.views import AgentsView
from tests.tui.conftest import SIZE, cost_lines, live, screen_text, signal_lines, states, wait_for

pytestmark = [pytest.mark.timeout(90), pytest.mark.anyio]


@pytest.fixture
def code_review(repo: Path) -> Path:
    return repo / "scores" / "code-review.yaml"


async def test_agents_pass_through_their_states_and_the_final_cost_is_shown(code_review: Path) -> None:
    app, stage = live(code_review, time_scale=0.5)
    seen: dict[str, list[str]] = {name: [] for name in app.ensemble.agents}
    async with app.run_test(size=SIZE) as pilot:

        def sample() -> bool:
            for name, state in states(app).items():
                if not seen[name] or seen[name][-1] != state:
                    seen[name].append(state)
            return app.ensemble.finished

        await wait_for(pilot, sample, "the run ends")
        await wait_for(pilot, lambda: stage.result is not None, "the result is set")
        result = stage.result
        assert result is not None and result.status == "completed"
        # Every agent of code-review is on screen at 120x40.
        assert set(states(app)) == set(app.ensemble.agents)
        assert set(states(app).values()) == {"done"}
        # What the panels say at the end is the run's own figures.
        assert cost_lines(app)["spend"] == f"${result.cost_usd:.4f}"
        assert cost_lines(app)["frontier"] == f"${result.frontier_cost_usd:.4f}"
        text = screen_text(app)
        assert "finished — q to quit" in text
        assert f"${result.cost_usd:.4f}" in text.splitlines()[0]
        for name, record in result.agents.items():
            assert f"${record.cost_usd:.4f}" in next(line for line in text.splitlines() if f"│{name} " in line)
    # The aggregator waited for its cues, then ran, then finished; followups ran after their reviewer.
    assert seen["aggregate"][0] == "waiting" and seen["aggregate"][-2:] == ["running", "done"]
    assert "running" in seen["security_followup"]
    assert seen["parse"][-1] == "done"


async def test_space_pauses_issuing_and_resumes_it(code_review: Path) -> None:
    app, stage = live(code_review, time_scale=1.0, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: states(app).get("parse") == "ready", "parse is ready and held back")
        await pilot.pause(0.3)
        assert states(app)["parse"] == "ready", "a paused run issued"
        assert "PAUSED" in screen_text(app).splitlines()[0]
        await pilot.press("space")
        await wait_for(pilot, lambda: states(app)["parse"] == "done", "parse runs once resumed")
        await pilot.press("space")  # pause again while the reviewers run
        assert stage.paused
        at_pause = {name: row.state for name, row in app.ensemble.agents.items()}
        in_flight = [name for name, state in at_pause.items() if state == "running"]
        assert in_flight, "the reviewers were issued with parse's cue"
        await wait_for(pilot, lambda: all(states(app)[n] == "done" for n in in_flight), "calls in flight commit")
        await pilot.pause(0.3)
        shown = states(app)
        for name, state in at_pause.items():
            if state in ("waiting", "ready"):
                assert shown[name] in ("waiting", "ready"), f"{name} was issued while paused"
        for name in in_flight:
            assert shown[f"{name}_followup"] == "ready", "a cue arrived: its follow-up is ready, held back"
        await pilot.press("space")
        await wait_for(pilot, lambda: stage.result is not None, "the run ends once resumed")
        assert stage.result is not None and stage.result.status == "completed"
        kinds = [line.split()[1] for line in signal_lines(app)]
        assert kinds.count("pause") == 2 and kinds.count("resume") == 2


async def test_a_human_fermata_is_approved_by_key(resources: Path) -> None:
    app, stage = live(resources / "scores" / "human-gate.yaml")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "draft@1 waits for you" in screen_text(app).splitlines()[0], "a person is asked")
        assert states(app)["draft"] == "held"
        assert "a person" in next(line for line in app.query_one(AgentsView).lines() if line.startswith("draft"))
        await pilot.press("a")
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
        assert states(app) == {"draft": "done", "publish": "done"}
        assert any("gate" in line and "draft" in line for line in signal_lines(app))
    assert stage.result is not None and stage.result.status == "completed"


async def test_a_human_fermata_is_rejected_by_key(resources: Path) -> None:
    app, stage = live(resources / "scores" / "human-gate.yaml")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(stage.waiting()), "a person is asked about draft")
        await pilot.press("r")
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
        assert states(app)["draft"] == "failed"
        assert states(app)["publish"] == "skipped"
    assert stage.result is not None and stage.result.status == "failed"


async def test_approving_with_nothing_pending_says_so(code_review: Path) -> None:
    app, _ = live(code_review, paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert any("no result is waiting" in n.message for n in app._notifications)
        await pilot.press("space")
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")


async def test_c_calls_a_caesura_after_confirmation(code_review: Path) -> None:
    app, stage = live(code_review, time_scale=2.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: states(app).get("security") == "running", "the reviewers run")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        await pilot.press("n")  # not yet
        await pilot.pause()
        assert not isinstance(app.screen, Confirm) and not app.ensemble.finished
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.ensemble.finished, "the run stops")
        shown = states(app)
        assert shown["aggregate"] == "skipped"
        assert "squashed" in shown.values()
        assert app.ensemble.status == "caesura"
        assert any(line.split()[1] == "caesura" for line in signal_lines(app))
    assert stage.result is not None and stage.result.status == "caesura"
    assert stage.result.caesura is not None and stage.result.caesura["agent"] is None


async def test_q_asks_while_work_runs_and_stops_the_run_when_confirmed(code_review: Path) -> None:
    app, stage = live(code_review, time_scale=2.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: states(app).get("parse") == "running", "parse runs")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, Confirm)
        assert "`hct perform --resume test-run` continues it" in app.screen.question  # the run's own command
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and not app.ensemble.finished
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, "the app closes")
    assert stage.result is not None and stage.result.status == "interrupted"


async def test_after_the_run_the_conductor_stays_until_q(code_review: Path) -> None:
    app, _ = live(code_review, time_scale=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
        await pilot.pause(0.2)
        assert app.is_running
        await pilot.press("q")  # nothing runs any more: no question
        await wait_for(pilot, lambda: not app.is_running, "the app closes")


async def test_exit_on_finish_closes_the_conductor(code_review: Path) -> None:
    app, stage = live(code_review, time_scale=0.05)
    app.exit_on_finish = True
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: not app.is_running, "the app closes by itself")
    assert stage.result is not None and stage.result.status == "completed"


async def test_slash_filters_the_signals_log(code_review: Path) -> None:
    app, _ = live(code_review, time_scale=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
        await pilot.pause()
        assert {line.split()[1] for line in signal_lines(app)} > {"gate"}
        await pilot.press("slash")
        await pilot.press(*"passed")
        await pilot.pause()
        filtered = signal_lines(app)
        assert filtered and {line.split()[1] for line in filtered} == {"gate"}
        assert app.is_running, "typing q-free text into the filter must not trigger keys"
        await pilot.press("escape")
        await pilot.pause()
        assert {line.split()[1] for line in signal_lines(app)} > {"gate"}


async def test_drawing_is_coalesced_into_frames(repo: Path, tmp_path: Path) -> None:
    from hct_cli.bench.synthetic import emit_yaml, random_dag

    path = tmp_path / "big.yaml"
    emit_yaml(random_dag(2000, seed=0, latency_ms=(0, 0)), path)
    app, stage = live(path)
    events = 0
    count = app.ensemble.__call__

    def counting(event: object) -> None:
        nonlocal events
        events += 1
        count(event)  # type: ignore[arg-type]

    stage.performer.observers = [counting]
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends", limit_s=60)
    assert stage.result is not None and stage.result.status == "completed"
    assert events > 8000
    assert app.frames < events / 20, f"{app.frames} frames for {events} events: drawing is not coalesced"
    assert FPS <= 30


def test_no_color_is_honoured(code_review: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app, _ = live(code_review)
    assert app.no_color
    monkeypatch.delenv("NO_COLOR")
    app, _ = live(code_review)
    assert not app.no_color


TWO_PEOPLE = """
hct: 1
name: two-people
agents:
  one:
    prompt: "first"
    simulate: {latency_ms: 10}
    fermata: {check: {human: true}, timeout_s: 60, default: reject, retries: 0}
  two:
    prompt: "second"
    simulate: {latency_ms: 20}
    fermata: {check: {human: true}, timeout_s: 60, default: reject, retries: 0}
"""


async def test_two_quick_keys_decide_two_results_in_the_order_they_were_asked(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(TWO_PEOPLE)
    app, stage = live(path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(stage.waiting()) == 2, "both results wait for a person")
        first, second = (q.agent for q in stage.waiting())
        await pilot.press("a", "r")  # faster than the desk looks for decisions
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
        assert states(app) == {first: "done", second: "failed"}


VAMP_PERSON = """
hct: 1
name: vamp-person
agents:
  draft:
    prompt: "draft it"
    simulate: {latency_ms: 10}
    vamp: {until: {human: true}, max: 3}
"""


async def test_a_person_decides_a_vamp_from_the_conductor(tmp_path: Path) -> None:
    """Not only fermatas ask a person: a vamp's ``until`` does too, and the keys answer it."""
    path = tmp_path / "vamp.yaml"
    path.write_text(VAMP_PERSON)
    app, stage = live(path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "draft@1 waits for you" in screen_text(app).splitlines()[0], "a person is asked")
        await pilot.press("r")  # not yet: another pass
        await wait_for(pilot, lambda: "draft@2 waits for you" in screen_text(app).splitlines()[0], "asked again")
        await pilot.press("a")
        await wait_for(pilot, lambda: app.ensemble.finished, "the run ends")
    assert stage.result is not None and stage.result.status == "completed"
    assert stage.result.agents["draft"].version == 2
