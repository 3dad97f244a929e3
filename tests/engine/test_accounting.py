"""The critical path after a run: its length and the agents on it, from each agent's own latency."""

from __future__ import annotations

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.call_result import CallResult
from hct_cli.engine.accounting import critical_chain, critical_path
from hct_cli.engine.result import AgentRecord
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(30)

# root -> {left, right} -> join, and a lone agent beside them.
DIAMOND = {
    "root": {"prompt": "r"},
    "left": {"prompt": "l", "cues": ["root"]},
    "right": {"prompt": "r", "cues": ["root"]},
    "join": {"prompt": "j", "cues": ["left", "right"]},
    "lone": {"prompt": "x"},
}


def records(latency: dict[str, float]) -> dict[str, AgentRecord]:
    return {
        name: AgentRecord(status="done", result=Broadcast(name, 1, True, CallResult(None, None, latency_s=seconds)))
        for name, seconds in latency.items()
    }


@pytest.mark.parametrize(
    ("latency", "chain"),
    [
        ({"root": 1.0, "left": 5.0, "right": 2.0, "join": 1.0, "lone": 3.0}, ["root", "left", "join"]),
        ({"root": 1.0, "left": 2.0, "right": 5.0, "join": 1.0, "lone": 3.0}, ["root", "right", "join"]),
        ({"root": 1.0, "left": 2.0, "right": 2.0, "join": 1.0, "lone": 9.0}, ["lone"]),
    ],
)
def test_the_chain_is_the_longest_path_and_adds_up_to_its_length(latency: dict[str, float], chain: list[str]) -> None:
    program = program_of(DIAMOND)
    done = records(latency)
    assert critical_chain(program, done) == chain
    assert sum(latency[name] for name in chain) == pytest.approx(critical_path(program, done))


def test_of_chains_that_tie_the_earlier_declared_cue_is_taken() -> None:
    program = program_of(DIAMOND)
    done = records({"root": 1.0, "left": 2.0, "right": 2.0, "join": 1.0, "lone": 0.5})
    assert critical_chain(program, done) == ["root", "left", "join"]


def test_a_single_agent_is_its_own_chain() -> None:
    program = program_of({"only": {"prompt": "x"}})
    assert critical_chain(program, records({"only": 0.25})) == ["only"]
