"""The MESI directory and the hold locks, step by step; the policies through the engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hct_cli.engine import EngineOptions, Hands
from hct_cli.engine.coherence import CoherenceError, Directory, HoldTable, lock_modes
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.events import Event
from hct_cli.program.compile import compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.providers.simulated import SimulatedProvider
from tests.engine.fakes import program_of

pytestmark = pytest.mark.timeout(120)


def transitions(events: list[tuple[str, str, str, dict[str, Any]]]) -> list[tuple[str, str, str, str]]:
    return [(agent, key, d["from"], d["to"]) for kind, agent, key, d in events if kind == "mesi"]


def test_a_lone_reader_is_exclusive_and_a_second_reader_makes_both_shared() -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    d = Directory({"k": "v0"}, lambda *e: seen.append(e))
    assert d.read("a", "k") == ("v0", 0)
    assert d.state("a", "k") == "E"
    d.read("b", "k")
    assert (d.state("a", "k"), d.state("b", "k")) == ("S", "S")
    assert transitions(seen) == [("a", "k", "I", "E"), ("a", "k", "E", "S"), ("b", "k", "I", "S")]


def test_a_write_is_a_read_for_ownership_and_commit_cues_the_former_sharers() -> None:
    seen: list[tuple[str, str, str, dict[str, Any]]] = []
    d = Directory({"k": "v0"}, lambda *e: seen.append(e))
    d.read("a", "k")
    d.read("b", "k")
    d.write("w", "k")
    assert [d.state(x, "k") for x in ("a", "b", "w")] == ["I", "I", "M"]
    fermata = [e for e in seen if e[0] == "fermata"]
    assert fermata and fermata[0][3]["rfo"] and fermata[0][3]["invalidated"] == ["a", "b"]
    cued = d.commit("w", 1, {"k": "v1"}, {}, 0)
    assert cued == {"k": ["a", "b"]}
    assert (d.value("k"), d.version("k")) == ("v1", 1)
    assert d.stale({"k": 0}) == ["k"] and d.stale({"k": 1}) == []
    assert d.state("w", "k") == "I"


def test_reading_a_modified_line_is_a_protocol_error() -> None:
    d = Directory({"k": 0})
    d.write("w", "k")
    with pytest.raises(CoherenceError):
        d.read("r", "k")
    with pytest.raises(CoherenceError):
        d.acquire("other", "k")


def test_appends_bump_the_version_and_materialise_in_declaration_order() -> None:
    d = Directory({"notes": ["seed"]})
    _, version = d.read("reader", "notes")
    d.commit("late", 1, {}, {"notes": "from late"}, index=5)
    d.commit("early", 1, {}, {"notes": "from early"}, index=1)
    assert d.value("notes") == ["seed", "from early", "from late"]
    assert d.stale({"notes": version}) == ["notes"]
    assert d.state("reader", "notes") == "I"


def test_release_drops_copies_and_buffered_ownership() -> None:
    d = Directory({"k": 0})
    d.read("a", "k")
    d.write("w", "k")
    d.release("w", ["k"])
    assert d.state("w", "k") == "I" and d.value("k") == 0
    assert d.read("a", "k") == (0, 0)  # nothing of w's buffered write leaked


def test_lock_modes() -> None:
    assert lock_modes(["a", "b"], ["c"], ["b", "d"]) == {"a": "S", "b": "X", "d": "A", "c": "X"}


def test_hold_table_is_all_or_nothing_fifo_and_lets_compatible_modes_share() -> None:
    t = HoldTable()
    assert t.request("r1", {"k": "S"})
    assert t.request("r2", {"k": "S"}), "readers share"
    assert not t.request("w", {"k": "X", "j": "X"}), "a writer waits for the readers"
    assert not t.request("r3", {"k": "S"}), "a later reader does not overtake the waiting writer"
    assert t.request("j", {"j": "A"}) is False, "w is ahead on j"
    assert t.release("r1") == []
    assert t.release("r2") == ["w"]
    assert set(t.release("w")) == {"r3", "j"}
    t2 = HoldTable()
    assert t2.request("a1", {"log": "A"}) and t2.request("a2", {"log": "A"}), "appenders share"


def run(program: Any, coherence: str | None = None, seed: int = 0) -> tuple[RunResult, list[Event]]:
    events: list[Event] = []
    provider = SimulatedProvider(seed, time_scale=0.05)
    inputs = resolve_inputs(program.score, {})
    performer = Performer(
        program,
        Hands(lambda spec: provider),
        inputs=inputs,
        observers=[events.append],
        options=EngineOptions(coherence=coherence),
    )
    return asyncio.run(performer.run()), events


@pytest.fixture(scope="module")
def collab(repo: Path) -> Any:
    return compile_score(load_score(repo / "scores/collab-writing.yaml"))


@pytest.fixture(scope="module")
def repo() -> Path:
    return Path(__file__).resolve().parents[2]


def test_collab_writing_off_lets_stale_work_through(collab: Any) -> None:
    result, events = run(collab, "off")
    assert result.status == "completed"
    assert result.stale_reads > 0
    assert result.replays == 0
    assert sum(1 for e in events if e.kind == "stale_read") == result.stale_reads
    # Nine modifications: three vamp passes each for planner, writer and editor.
    assert [result.agents[n].calls for n in ("planner", "writer", "editor")] == [3, 3, 3]


@pytest.mark.parametrize("policy", ["replay", "hold"])
def test_collab_writing_replay_and_hold_never_commit_stale_work(collab: Any, policy: str) -> None:
    result, events = run(collab, policy)
    assert result.status == "completed"
    assert result.stale_reads == 0
    if policy == "replay":
        assert result.replays > 0 and any(e.kind == "replay" for e in events)
    else:
        assert result.replays == 0 and result.holds > 0 and result.hold_s > 0
    assert any(e.kind == "fermata" and e.data.get("rfo") for e in events)
    cue_keys = [e.data["keys"] for e in events if e.kind in ("cue", "vamp") and e.data.get("keys")]
    assert cue_keys, "commits never broadcast the updated keys"


def test_replays_are_bounded_then_the_agent_takes_hold_locks() -> None:
    """A slow reader whose key a fast writer keeps moving would replay forever; after 3 it holds."""
    program = program_of(
        {
            "writer": {
                "prompt": "p",
                "writes": ["k"],
                "reads": ["k"],
                "vamp": {"max": 40, "until": {"contains": "NEVER"}},
                "simulate": {"latency_ms": 10},
            },
            "reader": {"prompt": "p", "reads": ["k"], "writes": ["out"], "simulate": {"latency_ms": 45}},
        },
        state={"k": {"initial": 0}, "out": {"initial": ""}},
    )
    result, events = run(program, "replay")
    assert result.status == "completed" and result.stale_reads == 0
    replays = [e for e in events if e.kind == "replay" and e.station == "reader"]
    # The writer commits every few milliseconds, so each of the reader's runs is overtaken.
    assert [e.data["hold"] for e in replays] == [False, False, False, True]
    # Holding S on k, the reader parks the writer's next commit until its own is done.
    assert result.holds >= 1 and any(e.kind == "hold" and e.station == "writer" for e in events)
    assert result.agents["writer"].calls == 40


def test_a_failed_agent_leaves_no_partial_write() -> None:
    program = program_of(
        {"both": {"prompt": "p", "writes": ["a", "b"], "simulate": {"latency_ms": 0, "output": "not json"}}},
        state={"a": {"initial": "A0"}, "b": {"initial": "B0"}},
    )
    result, _ = run(program)
    assert result.agents["both"].status == "failed"
    assert result.state == {"a": "A0", "b": "B0"}


def test_scores_without_shared_state_touch_no_directory() -> None:
    program = program_of({"a": {"prompt": "p"}, "b": {"prompt": "p", "cues": ["a"]}})
    result, events = run(program)
    assert result.status == "completed"
    assert not [e for e in events if e.kind in ("mesi", "fermata", "replay", "hold")]


def test_an_append_cues_only_the_copies_it_made_stale() -> None:
    d = Directory({"k": []})
    d.read("a", "k")
    assert d.commit("b", 1, {}, {"k": 1}, 1) == {"k": ["a"]}
    assert d.commit("c", 1, {}, {"k": 2}, 2) == {"k": []}, "a was cued already and holds no copy"
