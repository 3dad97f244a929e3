"""The conductor's model on its own: an :class:`Ensemble` fed engine events, no Textual app.

Events are built by hand where a test needs one exact situation, and come from real runs of
small scores (the ``Scripted`` provider of the engine tests) where the figures must agree with
the engine's own. Nothing here measures the wall clock: times are the events' own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hct_cli.engine import Hands, Performer, RunResult
from hct_cli.events import Event
from hct_cli.models import model_info
from hct_cli.program.compile import Program
from hct_cli.tui.ensemble import LOG_LIMIT, Ensemble, Span
from tests.engine.fakes import Scripted, score, until

pytestmark = pytest.mark.timeout(60)


# -- helpers ------------------------------------------------------------------------------------


def program() -> Program:
    """Two roots (``b`` routed to the frontier tier), ``c`` on both (cues listed b first), ``d`` on
    ``c``; ``a`` writes the shared key ``x``, ``d`` reads it."""
    return score(
        {
            "a": {"prompt": "first", "writes": ["x"]},
            "b": {"prompt": "second", "tempo": "presto", "dynamics": "ff"},
            "c": {"prompt": "{{ cues.b }} and {{ cues.a }}", "cues": ["b", "a"]},
            "d": {"prompt": "{{ cues.c }} with {{ state.x }}", "cues": ["c"], "reads": ["x"]},
        },
        state={"x": {"initial": "x0"}},
    )


def ev(kind: str, at: float = 0.0, station: str | None = None, version: int = 0, **data: Any) -> Event:
    return Event(kind, at, station, version, data)


def feed(ensemble: Ensemble, *events: Event) -> Ensemble:
    for event in events:
        ensemble(event)
    return ensemble


def ran(ensemble: Ensemble, name: str, version: int = 1, at: float = 0.0, **result: Any) -> None:
    """``name`` issued, answered (3 + 5 tokens, $0.001 unless told) and cued."""
    data = {"prompt_tokens": 3, "completion_tokens": 5, "cost_usd": 0.001, **result}
    feed(
        ensemble,
        ev("issue", at, name, version, model="gpt-4o-mini", tier="mid"),
        ev("result", at + 0.1, name, version, **data),
        ev("cue", at + 0.2, name, version, cost_usd=data["cost_usd"], keys={}),
    )


def frontier_cost(prompt: int, completion: int) -> float:
    """What those tokens cost on the default frontier tier's model (priced by litellm's map)."""
    info = model_info("claude-sonnet-4-5")
    assert info is not None and info.input_cost_per_token > 0
    return info.cost(prompt, completion)


def states(ensemble: Ensemble) -> dict[str, str]:
    return {name: row.state for name, row in ensemble.agents.items()}


# -- the rows before the run --------------------------------------------------------------------


def test_roots_are_ready_and_the_others_wait_for_their_cues_in_declaration_order() -> None:
    ensemble = Ensemble(program(), budget_usd=1.5, run_id="r1")
    assert list(ensemble.agents) == ["a", "b", "c", "d"]
    assert states(ensemble) == {"a": "ready", "b": "ready", "c": "waiting", "d": "waiting"}
    c, d = ensemble.agents["c"], ensemble.agents["d"]
    assert c.cues == ("b", "a") and list(c.missing) == ["b", "a"]
    assert c.waits_for() == "b +1"
    assert list(d.missing) == ["c"] and d.waits_for() == "c"
    assert ensemble.agents["a"].waits_for() == ""  # ready: it lacks nothing
    # The route the compiler chose, before any call.
    assert (ensemble.agents["b"].tier, ensemble.agents["b"].model) == ("frontier", "claude-sonnet-4-5")
    assert (ensemble.agents["a"].tier, ensemble.agents["a"].model) == ("mid", "gpt-4o-mini")
    assert ensemble.keys == ["x"] and ensemble.key_versions == {"x": 0}
    assert (ensemble.score_name, ensemble.run_id, ensemble.budget_usd) == ("t", "r1", 1.5)
    assert (ensemble.status, ensemble.done, ensemble.spend_usd, ensemble.frontier_usd) == ("running", 0, 0.0, 0.0)
    assert not ensemble.finished and not ensemble.paused and not ensemble.pending
    assert ensemble.running == 0 and ensemble.agents["a"].elapsed(5.0) is None


def test_an_agent_missing_three_cues_names_the_first_and_counts_the_others() -> None:
    ensemble = Ensemble(
        score(
            {
                "p": {"prompt": "p"},
                "q": {"prompt": "q"},
                "r": {"prompt": "r"},
                "s": {"prompt": "{{ cues.r }} {{ cues.p }} {{ cues.q }}", "cues": ["r", "p", "q"]},
            }
        )
    )
    s = ensemble.agents["s"]
    assert list(s.missing) == ["r", "p", "q"] and s.waits_for() == "r +2"
    ran(ensemble, "r")
    assert list(s.missing) == ["p", "q"] and s.waits_for() == "p +1" and s.state == "waiting"


# -- a station's events -------------------------------------------------------------------------


def test_an_issue_runs_the_agent_with_its_model_tier_and_version() -> None:
    ensemble = feed(Ensemble(program()), ev("issue", 0.5, "a", 3, model="claude-sonnet-4-5", tier="frontier"))
    a = ensemble.agents["a"]
    assert (a.state, a.version, a.model, a.tier) == ("running", 3, "claude-sonnet-4-5", "frontier")
    assert a.started == 0.5 and a.finished is None
    assert a.spans == [Span(0.5, None, "running")]
    assert ensemble.running == 1
    assert a.elapsed(2.0) == pytest.approx(1.5)
    assert ensemble.revision == 1 and ensemble.last_time == 0.5
    assert list(ensemble.signals()) == [], "an issue is not a signal"


def test_a_second_issue_while_the_first_runs_closes_the_first_span_as_an_earlier_pass() -> None:
    ensemble = feed(Ensemble(program()), ev("issue", 0.0, "a", 1), ev("issue", 0.4, "a", 2))
    a = ensemble.agents["a"]
    assert a.spans == [Span(0.0, 0.4, "done"), Span(0.4, None, "running")]
    assert (a.version, a.started) == (2, 0.0)  # elapsed counts from the first issue
    assert a.model == "gpt-4o-mini" and a.tier == "mid"  # no model in the event: the route's stays


def test_a_result_adds_tokens_and_cost_to_the_agent_and_to_the_spend() -> None:
    ensemble = Ensemble(program())
    feed(
        ensemble,
        ev("issue", 0.0, "a", 1),
        ev("result", 0.1, "a", 1, prompt_tokens=3, completion_tokens=5, cost_usd=0.001),
        ev("issue", 0.0, "b", 1),
        ev("result", 0.2, "b", 1, prompt_tokens=30, completion_tokens=50, cost_usd=0.01),
    )
    a, b = ensemble.agents["a"], ensemble.agents["b"]
    assert a.tokens == 8 and a.cost_usd == pytest.approx(0.001)
    assert b.tokens == 80 and b.cost_usd == pytest.approx(0.01)
    assert ensemble.spend_usd == pytest.approx(0.011)
    # The all-frontier counterfactual prices the same tokens on the frontier tier's model.
    assert ensemble.frontier_usd == pytest.approx(frontier_cost(33, 55))
    assert ensemble.saving_usd == pytest.approx(ensemble.frontier_usd - 0.011)
    assert a.state == "running", "a result alone does not commit"


def test_a_cache_hit_is_not_in_the_frontier_counterfactual() -> None:
    ensemble = feed(
        Ensemble(program()),
        ev("issue", 0.0, "a", 1),
        ev("result", 0.1, "a", 1, prompt_tokens=3, completion_tokens=5, cost_usd=0.0, cached=True),
        ev("issue", 0.0, "b", 1),
        ev("result", 0.2, "b", 1, prompt_tokens=30, completion_tokens=50, cost_usd=0.01),
    )
    # docs/figures.md: the counterfactual prices the calls the run paid for, as cost_usd counts them.
    assert ensemble.agents["a"].tokens == 8
    assert ensemble.frontier_usd == pytest.approx(frontier_cost(30, 50))


def test_a_result_for_no_station_is_still_spent() -> None:
    ensemble = feed(Ensemble(program()), ev("result", 0.1, None, 0, prompt_tokens=1, completion_tokens=1, cost_usd=0.5))
    assert ensemble.spend_usd == pytest.approx(0.5)
    assert ensemble.frontier_usd == 0.0
    assert all(row.cost_usd == 0 and row.tokens == 0 for row in ensemble.agents.values())


def test_without_a_priced_frontier_model_the_counterfactual_is_the_cost_itself() -> None:
    unpriced = score(
        {"a": {"prompt": "x"}, "b": {"prompt": "{{ cues.a }}", "cues": ["a"]}},
        routing={"tiers": {"frontier": {"model": "acme/unpriced-model-1"}}},
    )
    ensemble = feed(Ensemble(unpriced), ev("result", 0.1, "a", 1, prompt_tokens=3, completion_tokens=5, cost_usd=0.25))
    assert ensemble.frontier_usd == pytest.approx(0.25) and ensemble.spend_usd == pytest.approx(0.25)


def test_a_judges_result_is_spent_and_priced_at_the_frontier_as_the_runs_own_figure_does() -> None:
    ensemble = Ensemble(program())
    feed(
        ensemble,
        ev("issue", 0.0, "a", 1),
        ev("result", 0.1, "a", 1, prompt_tokens=3, completion_tokens=5, cost_usd=0.001),
        ev("fermata", 0.1, "a", 1, hold="gate"),
    )
    frontier = ensemble.frontier_usd
    assert frontier == pytest.approx(frontier_cost(3, 5))
    ensemble(ev("result", 0.2, "a", 1, prompt_tokens=100, completion_tokens=10, cost_usd=0.02, purpose="judge"))
    a = ensemble.agents["a"]
    assert ensemble.spend_usd == pytest.approx(0.021)
    assert a.cost_usd == pytest.approx(0.021) and a.tokens == 118
    assert ensemble.frontier_usd == pytest.approx(frontier + frontier_cost(100, 10))


def test_a_cue_finishes_the_agent_and_readies_dependents_once_every_cue_arrived() -> None:
    ensemble = Ensemble(program())
    ran(ensemble, "a", at=1.0)
    a, c = ensemble.agents["a"], ensemble.agents["c"]
    assert (a.state, a.finished, ensemble.done) == ("done", 1.2, 1)
    assert a.spans == [Span(1.0, 1.2, "done")]
    assert a.elapsed(99.0) == pytest.approx(0.2), "a finished agent's time stops at its end"
    assert list(c.missing) == ["b"] and c.state == "waiting" and c.waits_for() == "b"
    ran(ensemble, "b", at=2.0)
    assert list(c.missing) == [] and c.state == "ready" and c.waits_for() == ""
    assert ensemble.agents["d"].state == "waiting"
    assert ensemble.done == 2
    [cue_a, cue_b] = [s for s in ensemble.signals() if s.kind == "cue"]
    assert (cue_a.where, cue_a.text, cue_a.at) == ("a@1", "$0.0010", 1.2)
    assert cue_b.where == "b@1"


def test_a_cue_for_a_dependent_already_running_leaves_it_running() -> None:
    # It fired early (speculation): the producer's cue confirms it, it does not become ready.
    ensemble = Ensemble(program())
    ran(ensemble, "b")
    feed(ensemble, ev("speculate", 0.3, "c", 1, on="a@1"), ev("issue", 0.3, "c", 1))
    assert ensemble.agents["c"].state == "running"
    ran(ensemble, "a", at=0.5)
    assert ensemble.agents["c"].state == "running" and list(ensemble.agents["c"].missing) == []


@pytest.mark.parametrize(("kind", "state"), [("fail", "failed"), ("skip", "skipped"), ("tacet", "tacet")])
def test_fail_skip_and_tacet_close_the_row(kind: str, state: str) -> None:
    ensemble = Ensemble(program())
    ensemble(ev("issue", 1.0, "a", 1))
    ensemble(ev("mesi", 1.0, "a", 1, key="x", to="E", key_version=0))
    ensemble(ev(kind, 1.5, "a", 1, **({"error": "boom"} if kind == "fail" else {"reason": "why not"})))
    a = ensemble.agents["a"]
    assert (a.state, a.finished, a.hold) == (state, 1.5, "")
    assert a.spans == [Span(1.0, 1.5, state)]
    assert ensemble.cells[("x", "a")] == ("I", 0), "a closed row keeps no line of shared state"
    assert ensemble.done == 1 and ensemble.running == 0
    [signal] = list(ensemble.signals(kind))
    assert signal.where == "a@1"
    assert signal.text == ("boom" if kind == "fail" else "why not")


def test_done_never_counts_an_agent_twice() -> None:
    ensemble = Ensemble(program())
    feed(ensemble, ev("skip", 1.0, "c", reason="upstream"), ev("fail", 1.1, "c", 1, error="late"))
    assert ensemble.done == 1
    assert ensemble.agents["c"].state == "failed"
    ensemble(ev("skip", 1.2, "c", reason="again"))
    assert ensemble.done == 1
    ran(ensemble, "a")
    ensemble(ev("cue", 2.0, "a", 1, cost_usd=0.0, keys={}))  # a duplicate cue
    assert ensemble.done == 2
    ensemble(ev("tacet", 2.1, "a", 1, reason="rests"))
    assert ensemble.done == 2


def test_a_tacet_agent_stays_tacet_when_its_null_result_is_cued() -> None:
    """The engine announces a rest with ``tacet`` and then cues the agent's null result (see
    ``Performer._tacet``): the row must stay ``tacet``, as the engine's record does."""
    ensemble = Ensemble(program())
    feed(ensemble, ev("tacet", 1.0, "a", 1, reason="passed"), ev("cue", 1.0, "a", 1, cost_usd=0.0, keys={}))
    assert ensemble.done == 1
    assert list(ensemble.agents["c"].missing) == ["b"], "the rest's cue still counts for the dependents"
    assert ensemble.agents["a"].state == "tacet"


def test_a_tacet_agent_of_a_real_run_is_shown_tacet() -> None:
    rest = score(
        {
            "a": {"prompt": "decide"},
            "b": {"prompt": "work on {{ cues.a }}", "cues": ["a"], "tacet_if": {"cue": "a", "contains": "skip"}},
            "c": {"prompt": "after {{ cues.b }}", "cues": ["b"]},
        }
    )
    ensemble = Ensemble(rest)
    provider = Scripted({"a": "skip it"})
    result = asyncio.run(Performer(rest, Hands(lambda spec: provider), observers=[ensemble]).run())
    assert result.agents["b"].status == "tacet"
    assert {name: row.state for name, row in ensemble.agents.items()} == {
        name: record.status for name, record in result.agents.items()
    }


# -- fermatas and gates -------------------------------------------------------------------------


def test_a_fermata_for_a_person_holds_the_agent_until_its_gate() -> None:
    ensemble = Ensemble(program())
    feed(ensemble, ev("issue", 0.0, "a", 2), ev("result", 1.0, "a", 2), ev("fermata", 1.0, "a", 2, hold="approval"))
    a = ensemble.agents["a"]
    assert ensemble.pending == {"a": 2}
    assert a.state == "held" and a.waits_for() == "a person: a / r"
    assert a.spans == [Span(0.0, 1.0, "done"), Span(1.0, None, "held")]
    assert [s.text for s in ensemble.signals("fermata")] == ["waits for a person (a approves, r rejects)"]
    ensemble(ev("gate", 3.0, "a", 2, passed=True, reason="approved"))
    assert ensemble.pending == {}
    assert a.state == "held", "a passed gate commits at once: the cue ends the hold"
    ensemble(ev("cue", 3.0, "a", 2, cost_usd=0.001, keys={}))
    assert a.state == "done" and a.hold == ""
    assert a.spans[-1] == Span(1.0, 3.0, "held"), "the wait at the gate stays drawn as one"
    assert [s.text for s in ensemble.signals("gate")] == ["passed: approved"]


def test_an_automatic_gate_holds_the_agent_but_asks_nobody() -> None:
    ensemble = feed(Ensemble(program()), ev("issue", 0.0, "b", 1), ev("fermata", 0.5, "b", 1, hold="gate"))
    b = ensemble.agents["b"]
    assert b.state == "held" and b.waits_for() == "its gate"
    assert ensemble.pending == {}


def test_a_rejected_fermata_fails_the_agent_and_leaves_nothing_pending() -> None:
    ensemble = feed(
        Ensemble(program()),
        ev("issue", 0.0, "a", 1),
        ev("fermata", 0.5, "a", 1, hold="approval"),
        ev("fermata", 0.6, "b", 1, hold="approval"),
    )
    assert list(ensemble.pending) == ["a", "b"]
    ensemble(ev("fail", 0.9, "a", 1, error="rejected"))
    assert ensemble.pending == {"b": 1} and ensemble.agents["a"].state == "failed"


def test_a_read_for_ownership_sets_a_coherence_cell_and_is_not_a_signal() -> None:
    ensemble = feed(Ensemble(program()), ev("issue", 0.0, "a", 1), ev("fermata", 0.2, "a", 1, key="x", key_version=4))
    assert ensemble.cells == {("x", "a"): ("E", 4)}
    assert ensemble.sharer_list == ["a"]
    assert ensemble.agents["a"].state == "running", "the key's fermata does not hold the agent"
    assert ensemble.logged == 0 and list(ensemble.signals()) == []


# -- speculation and the caesura ----------------------------------------------------------------


def test_a_squashed_agent_waits_again_with_a_squashed_span() -> None:
    ensemble = Ensemble(program())
    ran(ensemble, "b")
    feed(
        ensemble,
        ev("issue", 0.0, "a", 1),
        ev("fermata", 0.5, "a", 1, hold="gate"),
        ev("speculate", 0.5, "c", 1, on="a@1"),
        ev("issue", 0.6, "c", 1),
    )
    c = ensemble.agents["c"]
    assert c.state == "running"
    ensemble(ev("squash", 0.8, "c", 1, on="a@1", cost_usd=0.002))
    assert c.state == "waiting"
    assert c.spans == [Span(0.6, 0.8, "squashed")]
    assert list(c.missing) == ["a"] and c.waits_for() == "a"
    assert ensemble.done == 1  # b only
    [signal] = list(ensemble.signals("squash"))
    assert signal.text == "fired on a@1, which did not commit ($0.0020 thrown away)"


def test_a_conductors_caesura_squashes_work_in_flight_and_skips_what_never_ran() -> None:
    ensemble = Ensemble(program())
    ran(ensemble, "b")
    feed(
        ensemble,
        ev("issue", 1.0, "a", 1),
        ev("mesi", 1.0, "a", 1, key="x", to="E", key_version=0),
        ev("fermata", 1.5, "a", 1, hold="approval"),
        ev("mesi", 1.5, "d", 0, key="x", to="S", key_version=0),
    )
    assert ensemble.pending == {"a": 1} and ensemble.cells[("x", "d")] == ("S", 0)
    assert (ensemble.done, ensemble.agents["c"].state) == (1, "waiting")
    ensemble(ev("caesura", 2.0, None, 0, reason="stop now", checkpoint=0, squashed={"a": 1, "b": 1}))
    assert states(ensemble) == {"a": "squashed", "b": "squashed", "c": "skipped", "d": "skipped"}
    assert ensemble.pending == {}
    assert {cell for cell, _ in ensemble.cells.values()} == {"I"}
    assert ensemble.cells == {("x", "a"): ("I", 0), ("x", "d"): ("I", 0)}
    assert ensemble.agents["a"].spans[-1] == Span(1.5, 2.0, "held"), "squashed while held at its gate"
    assert ensemble.agents["c"].finished == 2.0
    [signal] = list(ensemble.signals("caesura"))
    assert signal.where == ""
    assert signal.text == "stop now (back to checkpoint 0)"


def test_a_caesura_no_longer_counts_a_squashed_commit_as_done() -> None:
    ensemble = Ensemble(program())
    for name in "abcd":
        ran(ensemble, name)
    assert ensemble.done == 4
    # c and d committed after the checkpoint: the caesura throws their results away.
    ensemble(ev("caesura", 2.0, None, 0, reason="stop", checkpoint=1, squashed={"c": 1, "d": 1}))
    assert states(ensemble) == {"a": "done", "b": "done", "c": "squashed", "d": "squashed"}
    assert ensemble.done == 2
    assert ensemble.agents["d"].spans == [Span(0.0, 0.2, "done")], "a closed span keeps its state"


def test_after_a_caesura_done_counts_every_settled_agent_as_a_skip_does() -> None:
    """A skip counts an agent as done (``N/M done``); the agents a caesura skips count too."""
    ensemble = Ensemble(program())
    ran(ensemble, "a")
    ensemble(ev("caesura", 2.0, None, 0, reason="stop", checkpoint=0, squashed={}))
    settled = sum(1 for row in ensemble.agents.values() if row.state in ("done", "failed", "skipped", "tacet"))
    assert states(ensemble) == {"a": "done", "b": "skipped", "c": "skipped", "d": "skipped"}
    assert ensemble.done == settled == 4


# -- coherence ----------------------------------------------------------------------------------


def test_mesi_events_fill_the_cells_and_list_sharers_in_the_order_they_came() -> None:
    ensemble = feed(
        Ensemble(program()),
        ev("mesi", 0.1, "d", 0, key="x", **{"from": "I", "to": "S"}, key_version=0),
        ev("mesi", 0.2, "a", 1, key="x", **{"from": "I", "to": "E"}, key_version=0),
        ev("mesi", 0.3, "a", 1, key="x", **{"from": "E", "to": "M"}, key_version=0),
        ev("mesi", 0.4, "c", 1, key="y", to="S", key_version=7),
        ev("mesi", 0.5, None, 0, key="x", to="S", key_version=9),  # no station: nothing to show
    )
    assert ensemble.sharer_list == ["d", "a", "c"]
    assert ensemble.cells == {("x", "d"): ("S", 0), ("x", "a"): ("M", 0), ("y", "c"): ("S", 7)}
    # A key the score did not declare joins the table at the version it was seen.
    assert ensemble.keys == ["x", "y"] and ensemble.key_versions == {"x": 0, "y": 7}
    assert list(ensemble.signals()) == [], "mesi transitions are not signals"


def test_a_cue_with_keys_bumps_their_versions_and_invalidates_former_sharers() -> None:
    ensemble = feed(
        Ensemble(program()),
        ev("mesi", 0.1, "d", 0, key="x", to="S", key_version=0),
        ev("mesi", 0.1, "c", 0, key="x", to="S", key_version=0),
        ev("issue", 0.2, "a", 1),
        ev("fermata", 0.3, "a", 1, key="x", key_version=0),
        ev("mesi", 0.3, "a", 1, key="x", to="M", key_version=0),
    )
    ensemble(ev("cue", 0.4, "a", 1, cost_usd=0.001, keys={"x": ["d"]}))
    assert ensemble.key_versions == {"x": 1}
    assert ensemble.cells[("x", "d")] == ("I", 0)
    assert ensemble.cells[("x", "c")] == ("S", 0), "c was not a former sharer"
    assert ensemble.cells[("x", "a")] == ("I", 0)
    [cue] = list(ensemble.signals("cue"))
    assert cue.text == "$0.0010 → x"
    ensemble(ev("cue", 0.5, "b", 1, cost_usd=0.0, keys={"x": []}))
    assert ensemble.key_versions == {"x": 2}


def test_a_real_run_with_shared_state_shows_every_agent_that_touched_it() -> None:
    shared = score(
        {
            "a": {"prompt": "x", "writes": ["x"]},
            "b": {"prompt": "{{ state.x }}", "reads": ["x"], "writes": ["x"], "cues": ["a"]},
            "c": {"prompt": "{{ state.x }}", "reads": ["x"], "cues": ["a"]},
        },
        state={"x": {"initial": "x0"}},
    )
    ensemble = Ensemble(shared)
    result = asyncio.run(Performer(shared, Hands(lambda spec: Scripted()), observers=[ensemble]).run())
    assert result.status == "completed"
    assert ensemble.sharer_list == ["a", "b", "c"]
    assert ensemble.key_versions == {"x": 2}  # a and b wrote it
    assert {cell for cell, _ in ensemble.cells.values()} == {"I"}, "every agent ended: no line is held"
    assert ensemble.done == 3


# -- the conductor's hands and the run's end ----------------------------------------------------


def test_pause_and_resume_toggle_paused_and_are_logged() -> None:
    ensemble = Ensemble(program())
    ensemble(ev("pause", 1.0))
    assert ensemble.paused
    ensemble(ev("resume", 2.0))
    assert not ensemble.paused
    ensemble(ev("pause", 3.0))
    assert ensemble.paused
    assert [(s.kind, s.text) for s in ensemble.signals()] == [
        ("pause", "issuing paused"),
        ("resume", "issuing again"),
        ("pause", "issuing paused"),
    ]


def test_run_start_takes_the_run_id_and_run_end_freezes_the_clock_with_the_runs_figures() -> None:
    ensemble = Ensemble(program())
    assert ensemble.now() == 0.0
    ensemble(ev("run_start", 0.0, agents=4, dispatch="reactive", run_id="abc123"))
    assert ensemble.run_id == "abc123" and ensemble.status == "running"
    ran(ensemble, "a", at=1.0)
    ensemble(ev("pause", 1.3))
    assert ensemble.now() >= 1.3, "the clock never runs behind the last event"
    ensemble(ev("run_end", 4.25, status="failed", cost_usd=0.5, frontier_cost_usd=0.75))
    assert ensemble.finished and ensemble.end_time == 4.25
    assert ensemble.status == "failed" and not ensemble.paused
    assert (ensemble.spend_usd, ensemble.frontier_usd) == (0.5, 0.75)
    assert ensemble.saving_usd == pytest.approx(0.25)
    assert ensemble.now() == 4.25
    ensemble(ev("result", 9.0, None, 0, cost_usd=0.0))  # a straggler moves nothing
    assert ensemble.now() == 4.25
    [end] = list(ensemble.signals("run_end"))
    assert end.text == "failed · $0.5000"


def test_run_end_without_figures_keeps_the_running_totals() -> None:
    ensemble = Ensemble(program())
    ran(ensemble, "a", cost_usd=0.003)
    ensemble(ev("run_end", 1.0))
    assert ensemble.status == "completed" and ensemble.spend_usd == pytest.approx(0.003)
    assert ensemble.frontier_usd == pytest.approx(frontier_cost(3, 5))


def test_a_custom_clock_replaces_the_wall_clock() -> None:
    ensemble = Ensemble(program())
    ensemble.clock = lambda: 7.5
    assert ensemble.now() == 7.5


# -- the signals log ----------------------------------------------------------------------------


def test_signals_filter_case_insensitively_on_kind_place_and_text() -> None:
    ensemble = Ensemble(program())
    feed(
        ensemble,
        ev("issue", 0.0, "a", 1),
        ev("fermata", 0.5, "a", 1, hold="regex"),
        ev("gate", 0.6, "a", 1, passed=False, reason="No Match For /x/"),
        ev("fail", 0.7, "a", 1, error="fermata failed 1 times"),
        ev("skip", 0.7, "c", 0, reason="upstream 'a' did not complete"),
    )
    assert [s.kind for s in ensemble.signals()] == ["fermata", "gate", "fail", "skip"]
    assert [s.kind for s in ensemble.signals("GATE")] == ["fermata", "gate"]  # "held for its regex gate"
    assert [s.kind for s in ensemble.signals("no match")] == ["gate"]
    assert [s.kind for s in ensemble.signals("FAILED:")] == ["gate"]
    assert [s.kind for s in ensemble.signals("C@0")] == ["skip"]
    assert [s.kind for s in ensemble.signals("Fermata")] == ["fermata", "fail"]
    assert list(ensemble.signals("nothing like it")) == []


def test_the_log_is_bounded_but_logged_counts_every_signal() -> None:
    ensemble = Ensemble(program())
    extra = 5
    for i in range(LOG_LIMIT + extra):
        ensemble(ev("pause" if i % 2 == 0 else "resume", float(i)))
    assert len(ensemble.log) == LOG_LIMIT
    assert ensemble.logged == LOG_LIMIT + extra
    assert ensemble.log[0].at == float(extra), "the oldest entries went first"
    assert ensemble.log[-1].at == float(LOG_LIMIT + extra - 1)
    assert ensemble.revision == LOG_LIMIT + extra


# -- a real run ---------------------------------------------------------------------------------


def perform_observed(
    prog: Program, provider: Any, judge_provider: Any = None
) -> tuple[Ensemble, dict[str, float], RunResult]:
    """Run ``prog`` with an ensemble observing; also the ensemble's own totals just before run_end."""
    ensemble = Ensemble(prog)
    before_end: dict[str, float] = {}

    def observe(event: Event) -> None:
        if event.kind == "run_end":
            before_end.update(spend=ensemble.spend_usd, frontier=ensemble.frontier_usd)
        ensemble(event)

    result = asyncio.run(
        Performer(prog, Hands(lambda spec: provider, judge_provider=judge_provider), observers=[observe]).run()
    )
    return ensemble, before_end, result


def test_a_real_run_ends_with_the_runs_own_spend_and_frontier_cost() -> None:
    prog = program()
    ensemble, before_end, result = perform_observed(prog, Scripted())
    assert result.status == "completed"
    assert states(ensemble) == {name: "done" for name in "abcd"}
    assert ensemble.done == 4 and ensemble.finished and ensemble.status == "completed"
    # Four calls at $0.001 and 3 + 5 tokens each; the frontier tier prices them at claude-sonnet-4-5's.
    assert result.cost_usd == pytest.approx(0.004)
    assert result.frontier_cost_usd == pytest.approx(4 * frontier_cost(3, 5))
    # The running totals agree with the run's before run_end says so, and after.
    assert before_end["spend"] == pytest.approx(result.cost_usd)
    assert before_end["frontier"] == pytest.approx(result.frontier_cost_usd)
    assert ensemble.spend_usd == pytest.approx(result.cost_usd)
    assert ensemble.frontier_usd == pytest.approx(result.frontier_cost_usd)
    for name, record in result.agents.items():
        row = ensemble.agents[name]
        assert row.cost_usd == pytest.approx(record.cost_usd)
        assert row.tokens == record.prompt_tokens + record.completion_tokens == 8
        assert (row.model, row.tier, row.version) == (record.model, record.tier, record.version)
        assert [span.state for span in row.spans] == ["done"]
    assert ensemble.now() == ensemble.end_time
    kinds = [s.kind for s in ensemble.signals()]
    assert kinds.count("cue") == 4 and kinds[-1] == "run_end"


def test_a_real_run_with_a_judge_keeps_the_frontier_figure_it_ends_with() -> None:
    """The cost panel shows the ensemble's running frontier figure while the run plays and the
    run's own once it ends: with a judge on a gate the two must not differ."""
    gated = score(
        {
            "a": {"prompt": "x", "fermata": {"check": {"judge": {"criteria": "good"}}}},
            "b": {"prompt": "{{ cues.a }}", "cues": ["a"]},
        }
    )
    provider = Scripted({"a": '{"score": 0.9, "reason": "ok"}'})
    ensemble, before_end, result = perform_observed(gated, provider, judge_provider=provider)
    assert result.status == "completed"
    assert [r.purpose for r in provider.requests].count("judge") == 1
    assert before_end["spend"] == pytest.approx(result.cost_usd) == pytest.approx(0.003)
    assert ensemble.agents["a"].cost_usd == pytest.approx(result.agents["a"].cost_usd) == pytest.approx(0.002)
    assert before_end["frontier"] == pytest.approx(result.frontier_cost_usd)


@pytest.mark.anyio
async def test_a_paused_performer_leaves_roots_ready_until_resumed() -> None:
    prog = program()
    ensemble = Ensemble(prog)
    provider = Scripted()
    p = Performer(prog, Hands(lambda spec: provider), observers=[ensemble])
    p.pause()
    assert ensemble.paused
    task = asyncio.create_task(p.run())
    await until(lambda: ensemble.run_id == p.run_id, "the run starts")
    for _ in range(20):
        await asyncio.sleep(0)
    assert provider.requests == [] and states(ensemble)["a"] == "ready"
    p.resume()
    result = await task
    assert result.status == "completed" and not ensemble.paused
    assert [s.kind for s in ensemble.signals()][:2] == ["pause", "resume"]
    assert states(ensemble) == {name: "done" for name in "abcd"}


def test_a_call_answered_from_the_journal_counts_its_cost_when_cued() -> None:
    """On a resume a restored call sends no result event: its cue carries the cost."""
    ensemble = Ensemble(program())
    feed(
        ensemble,
        ev("issue", 0.0, "a", 1, model="gpt-4o-mini", tier="mid", restored=True),
        ev("cue", 0.0, "a", 1, cost_usd=0.003, keys={}),
        ev("issue", 0.1, "b", 1, model="gpt-4o-mini", tier="mid"),
        ev("result", 0.2, "b", 1, prompt_tokens=3, completion_tokens=5, cost_usd=0.001),
        ev("cue", 0.2, "b", 1, cost_usd=0.001, keys={}),
    )
    assert ensemble.spend_usd == pytest.approx(0.004)
    assert ensemble.agents["a"].cost_usd == pytest.approx(0.003)
    assert ensemble.agents["b"].cost_usd == pytest.approx(0.001)
