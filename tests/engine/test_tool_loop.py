"""The tool loop in the engine's call path, against a real MCP server (the in-tree counter server
over streamable HTTP): rounds, parallel calls on a functional unit, refusals, max_steps, the
read cache, journaling before sending, speculation holding writes, and a caesura's writes.

The scripted model (``simulate: {tool_calls: ...}``) names the calls; the server is real, and its
state file counts what it did, so "no write was made" is the server's word, not the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import hct_cli
from hct_cli.engine import Hands, Performer, ResumeState, RunResult
from hct_cli.engine.gates import Gatekeeper
from hct_cli.engine.tooling import tool_digest
from hct_cli.events import Event
from hct_cli.program.compile import Program
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.store.runs import ToolJournal
from hct_cli.tools.toolbox import McpToolBox
from tests.engine.fakes import eventually, index_of, kinds, program_of, seen
from tests.engine.fakes import gatechecks as gatechecks  # the autouse fixture
from tests.tools.servers import counter_http_server, counter_state

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with counter_http_server(tmp_path) as (url, state):
        yield url, state


def tools_section(url: str, concurrency: int = 2) -> dict[str, Any]:
    return {
        "counter": {
            "url": url,
            "effects": "read",
            "concurrency": concurrency,
            "tools": {"append": {"effects": "write"}},
        }
    }


def rounds(*calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A ``simulate:`` section whose model makes these calls, one list per round."""
    return {"tool_calls": [[{"tool": tool, "args": args} for tool, args in round_] for round_ in calls]}


def score_text(url: str, agents: dict[str, Any]) -> str:
    import json

    return json.dumps({"hct": 1, "name": "tooled", "tools": tools_section(url), "agents": agents})


def perform(tmp_path: Path, url: str, agents: dict[str, Any], events: list[Event]) -> hct_cli.RunResult:
    path = tmp_path / "tooled.yaml"
    path.write_text(score_text(url, agents))
    return hct_cli.perform(str(path), simulate=True, time_scale=0.01, observers=[events.append], cache=False)


def test_an_agent_calls_tools_in_rounds_and_the_server_did_each_call_once(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    url, state = server
    events: list[Event] = []
    agents = {
        "worker": {
            "prompt": "Use the tools, then answer.",
            "tools": ["counter.echo", "counter.append", "counter.slow"],
            "max_steps": 4,
            "simulate": rounds(
                [("counter.echo", {"text": "hi"}), ("counter.slow", {"ms": 30, "text": "s"})],
                [("counter.append", {"text": "one"})],
            ),
        }
    }
    result = perform(tmp_path, url, agents, events)
    assert result.status == "completed", result.agents["worker"].error
    record = result.to_json()["agents"]["worker"]
    calls = record["tool_calls"]
    assert [(c["step"], c["tool"], c["ok"]) for c in calls] == [
        (0, "counter.echo", True),
        (0, "counter.slow", True),
        (1, "counter.append", True),
    ]
    assert counter_state(state)["appends"] == 1
    # Two rounds asked for tools, then the answer: three paid calls, all in the agent's cost.
    assert record["calls"] == 3
    paid = [e for e in kinds(events, "result", "worker")]
    assert [e.data.get("purpose", "call") for e in paid] == ["round", "round", "call"]
    assert record["cost_usd"] == pytest.approx(sum(e.data["cost_usd"] for e in paid))
    # Each call journaled (emitted) before its result, with the same digest.
    sent = {e.data["digest"]: i for i, e in enumerate(events) if e.kind == "tool_call"}
    answered = {e.data["digest"]: i for i, e in enumerate(events) if e.kind == "tool_result"}
    assert sent.keys() == answered.keys() and len(sent) == 3
    assert all(sent[d] < answered[d] for d in sent)
    echo = next(e for e in events if e.kind == "tool_result" and e.data["tool"] == "counter.echo")
    assert "hi" in echo.data["text"]


def test_a_tool_outside_the_agents_list_is_refused_and_never_reaches_the_server(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    url, state = server
    events: list[Event] = []
    agents = {
        "reader": {
            "prompt": "Read only.",
            "tools": ["counter.echo"],
            "simulate": rounds([("counter.append", {"text": "sneaky"}), ("counter.echo", {"text": "ok"})]),
        }
    }
    result = perform(tmp_path, url, agents, events)
    assert result.status == "completed"
    refused = kinds(events, "refused", "reader")
    assert [e.data["tool"] for e in refused] == ["counter.append"]
    assert counter_state(state)["appends"] == 0
    calls = result.to_json()["agents"]["reader"]["tool_calls"]
    assert [c.get("refused", False) for c in calls] == [True, False]


def test_an_agent_that_keeps_asking_for_tools_fails_at_max_steps(tmp_path: Path, server: tuple[str, Path]) -> None:
    url, _ = server
    events: list[Event] = []
    echo = [("counter.echo", {"text": "again"})]
    agents = {
        "looper": {"prompt": "Loop.", "tools": ["counter.*"], "max_steps": 2, "simulate": rounds(echo, echo, echo)}
    }
    result = perform(tmp_path, url, agents, events)
    assert result.status == "failed"
    error = result.agents["looper"].error or ""
    assert "max_steps" in error and "2" in error


def test_a_repeated_read_is_answered_from_the_runs_cache_and_a_write_never_is(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    url, state = server
    events: list[Event] = []
    twice = [("counter.count", {}), ("counter.append", {"text": "w"})]
    agents = {"again": {"prompt": "Twice.", "tools": ["counter.*"], "max_steps": 3, "simulate": rounds(twice, twice)}}
    result = perform(tmp_path, url, agents, events)
    assert result.status == "completed", result.agents["again"].error
    calls = result.to_json()["agents"]["again"]["tool_calls"]
    assert [(c["tool"], c.get("cached", False)) for c in calls] == [
        ("counter.count", False),
        ("counter.append", False),
        ("counter.count", True),
        ("counter.append", False),
    ]
    assert counter_state(state)["appends"] == 2


def test_concurrency_is_the_servers_functional_unit(tmp_path: Path, server: tuple[str, Path]) -> None:
    url, state = server
    events: list[Event] = []
    slow = [("counter.slow", {"ms": 80, "text": str(i)}) for i in range(6)]
    agents = {"wide": {"prompt": "Wide.", "tools": ["counter.slow"], "simulate": rounds(slow)}}
    result = perform(tmp_path, url, agents, events)
    assert result.status == "completed", result.agents["wide"].error
    assert counter_state(state)["max_in_flight"] == 2  # concurrency: 2, and six calls at once


# -- speculation: reads may run, writes wait; a squash sends no write --------------------------


def speculating(url: str) -> Program:
    """a (a held python gate, speculating) -> b, whose first round writes."""
    return program_of(
        {
            "a": {
                "prompt": "draft",
                "speculate": True,
                "fermata": {"check": {"python": "gatechecks:held"}, "retries": 0},
            },
            "b": {
                "prompt": "apply {{ cues.a }}",
                "cues": ["a"],
                "tools": ["counter.echo", "counter.append"],
                "max_steps": 2,
                "simulate": rounds([("counter.echo", {"text": "look"}), ("counter.append", {"text": "act"})]),
            },
        },
        tools=tools_section(url),
    )


def speculation_run(program: Program, events: list[Event], box: McpToolBox) -> Performer:
    hands = Hands(
        lambda spec: SimulatedProvider(1, time_scale=0.01),
        gates=Gatekeeper(tiers=program.tiers, allow_exec=True),
        tools=box,
    )
    return Performer(program, hands, observers=[events.append])


@pytest.mark.parametrize("passes", [True, False], ids=["confirmed", "squashed"])
def test_speculative_work_reads_but_its_write_waits_for_the_gate(
    gatechecks: ModuleType, server: tuple[str, Path], passes: bool
) -> None:
    url, state = server
    program = speculating(url)
    events: list[Event] = []
    box = McpToolBox(program.score.tools, inputs={}, allow_exec=False)
    p = speculation_run(program, events, box)

    async def cues() -> None:
        await eventually(lambda: len(gatechecks.pending()) == 1, "a's gate is held")
        await eventually(lambda: seen(events, "tool_hold", "b"), "b's write is held")
        await eventually(
            lambda: any(e.kind == "tool_result" and e.data["tool"] == "counter.echo" for e in events), "b read"
        )
        assert counter_state(state)["appends"] == 0
        gatechecks.resolve(passes)

    async def scenario() -> RunResult:
        task = asyncio.create_task(p.run())
        try:
            await cues()
            return await task
        finally:
            await box.aclose()  # in the loop its sessions live in

    result = asyncio.run(scenario())
    if passes:
        assert result.status == "completed", result.agents["b"].error
        assert counter_state(state)["appends"] == 1
        write = next(i for i, e in enumerate(events) if e.kind == "tool_call" and e.data["tool"] == "counter.append")
        assert index_of(events, "cue", "a") < write
    else:
        assert counter_state(state)["appends"] == 0
        assert not any(e.kind == "tool_call" and e.data["tool"] == "counter.append" for e in events)
        assert result.agents["b"].status == "skipped"


# -- a resume: journaled calls are answered again, a write in doubt is not sent --------------


def writer(url: str, idempotent: bool = False) -> Program:
    tools = tools_section(url)
    tools["counter"]["tools"]["append"]["idempotent"] = idempotent
    return program_of(
        {
            "w": {
                "prompt": "write",
                "tools": ["counter.append"],
                "max_steps": 2,
                "simulate": rounds([("counter.append", {"text": "once"})]),
            }
        },
        tools=tools,
    )


def resumed(program: Program, journal: ToolJournal, events: list[Event]) -> RunResult:
    box = McpToolBox(program.score.tools, inputs={}, allow_exec=False)
    hands = Hands(lambda spec: SimulatedProvider(1, time_scale=0.01), tools=box)
    performer = Performer(program, hands, observers=[events.append], resume=ResumeState(tools=journal))

    async def scenario() -> RunResult:
        try:
            return await performer.run()
        finally:
            await box.aclose()

    return asyncio.run(scenario())


WRITE = tool_digest("w", 1, 0, "counter.append", {"text": "once"})


def test_a_write_sent_without_a_journaled_result_is_not_sent_again(server: tuple[str, Path]) -> None:
    url, state = server
    events: list[Event] = []
    result = resumed(writer(url), ToolJournal(sent={WRITE: {"tool": "counter.append"}}), events)
    record = result.agents["w"]
    assert record.status == "needs_attention"
    assert record.attention is not None and record.attention["tool"] == "counter.append"
    assert "may have happened" in (record.error or "")
    assert counter_state(state)["appends"] == 0
    assert not kinds(events, "tool_call", "w")


def test_an_idempotent_write_in_doubt_is_sent_again(server: tuple[str, Path]) -> None:
    url, state = server
    result = resumed(writer(url, idempotent=True), ToolJournal(sent={WRITE: {"tool": "counter.append"}}), [])
    assert result.status == "completed", result.agents["w"].error
    assert counter_state(state)["appends"] == 1


def test_a_journaled_tool_result_is_answered_from_the_journal(server: tuple[str, Path]) -> None:
    url, state = server
    events: list[Event] = []
    journal = ToolJournal(results={WRITE: {"ok": True, "text": "appended 1"}})
    result = resumed(writer(url), journal, events)
    assert result.status == "completed", result.agents["w"].error
    assert counter_state(state)["appends"] == 0  # never sent again
    (answer,) = kinds(events, "tool_result", "w")
    assert answer.data["restored"] is True and answer.data["text"] == "appended 1"


# -- a caesura lists the writes it cannot undo ---------------------------------------------------


def test_a_caesura_lists_the_write_calls_made_after_its_checkpoint(tmp_path: Path, server: tuple[str, Path]) -> None:
    url, state = server
    events: list[Event] = []
    agents = {
        "w": {
            "prompt": "write",
            "tools": ["counter.append"],
            "max_steps": 2,
            "simulate": rounds([("counter.append", {"text": "outside"})]),
        },
        "gate": {
            "prompt": "check {{ cues.w }}",
            "cues": ["w"],
            "fermata": {"check": {"min_length": 100000}, "on_fail": "caesura"},
        },
    }
    result = perform(tmp_path, url, agents, events)
    assert result.status == "caesura"
    assert counter_state(state)["appends"] == 1
    (caesura,) = kinds(events, "caesura")
    assert [(w["agent"], w["tool"], w["arguments"]) for w in caesura.data["writes"]] == [
        ("w", "counter.append", {"text": "outside"})
    ]


def test_tool_answers_that_outgrow_the_models_window_fail_the_agent_before_the_next_round(
    tmp_path: Path, server: tuple[str, Path]
) -> None:
    url, _ = server
    events: list[Event] = []
    big = "x" * 560_000  # about 140,000 tokens once echoed back: over gpt-4o-mini's 128,000
    agents = {
        "reader": {
            "prompt": "Read it all.",
            "model": "gpt-4o-mini",
            "tools": ["counter.echo"],
            "simulate": rounds([("counter.echo", {"text": big})]),
        }
    }
    result = perform(tmp_path, url, agents, events)
    assert result.status == "failed"
    error = result.agents["reader"].error or ""
    assert "window" in error and "gpt-4o-mini" in error
    # One round, then the failure: no model call was made with the oversized prompt.
    assert [(e.data.get("purpose", "call"), e.data.get("ok", True)) for e in kinds(events, "result", "reader")] == [
        ("round", True),
        ("call", False),
    ]
