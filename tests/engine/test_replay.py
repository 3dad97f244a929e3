"""The replay order of a resume: journaled results arrive in their journaled order, new ones after
them, and an order the run no longer follows is given up instead of hanging the run."""

from __future__ import annotations

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.call_result import CallResult
from hct_cli.engine import ResumeState
from hct_cli.events import Event
from hct_cli.store.runs import RecalledCall
from tests.engine.fakes import Scripted, kinds, run, score

pytestmark = pytest.mark.timeout(30)

# Three writers of one key that may run at the same time: under replay, who commits first
# decides whose result is stale.
AGENTS = {
    name: {"prompt": f"{name}: {{{{ state.doc }}}}", "reads": ["doc"], "writes": ["doc"]} for name in ("a", "b", "c")
}
STATE = {"doc": {"initial": ""}}


def _recall(*keys: tuple[str, int, str]) -> dict[tuple[str, int, str], RecalledCall]:
    """A journal that holds these results, arrived in this order; no digest, so any request matches."""
    return {
        key: RecalledCall(
            None,
            None,
            None,
            Broadcast(key[0], key[1], True, CallResult(f"<{key[0]}@{key[1]} journaled>", None)),
            float(i),
        )
        for i, key in enumerate(keys)
    }


def _commits(events: list[Event]) -> list[str]:
    return [f"{e.station}@{e.version}" for e in events if e.kind in ("cue", "replay")]


@pytest.mark.parametrize("order", [("c", "a", "b"), ("b", "c", "a")])
def test_journaled_results_arrive_in_the_journal_order(order: tuple[str, str, str]) -> None:
    program = score(AGENTS, state=STATE)
    recall = _recall(*((name, 1, "call") for name in order))
    provider = Scripted()
    events: list[Event] = []
    result = run(program, provider, events, resume=ResumeState(recall=recall))
    assert result.status == "completed"
    # The first journaled result commits; the others read a value that moved and run again.
    first, *others = order
    assert _commits(events)[:3] == [f"{first}@1", f"{others[0]}@1", f"{others[1]}@1"]
    assert kinds(events, "cue")[0].station == first
    # Nothing journaled is called again; the one that committed first is never called at all.
    assert all(r.version > 1 for r in provider.requests)
    assert first not in {r.agent.name for r in provider.requests}
    assert [e.data["how"] for e in kinds(events, "replay_order")] == ["drained"]


def test_an_order_the_run_no_longer_follows_is_given_up() -> None:
    program = score(AGENTS, state=STATE)
    # The journal's first result is of an agent this score does not have: never asked for.
    recall = _recall(("gone", 1, "call"), ("a", 1, "call"))
    provider = Scripted()
    events: list[Event] = []
    result = run(program, provider, events, resume=ResumeState(recall=recall))
    assert result.status == "completed"
    (given_up,) = kinds(events, "replay_order")
    assert (given_up.data["how"], given_up.data["expected"], given_up.data["delivered"]) == ("diverged", "gone@1", 0)
    assert result.agents["a"].version >= 1 and all(r.status == "done" for r in result.agents.values())


def test_cost_counts_what_earlier_segments_paid_once() -> None:
    program = score(AGENTS, state=STATE)
    recall = _recall(("a", 1, "call"))
    recall[("a", 1, "call")].result.result.cost_usd = 0.5
    provider = Scripted(cost=0.25)
    # Earlier segments paid 0.5 for a@1 and 0.125 for a call no longer delivered (squashed).
    result = run(program, provider, [], resume=ResumeState(recall=recall, spent_before_usd=0.625))
    assert result.cost_usd == pytest.approx(0.625 + 0.25 * len(provider.requests))
    assert result.cost_usd != sum(record.cost_usd for record in result.agents.values())
