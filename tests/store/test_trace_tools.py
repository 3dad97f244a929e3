"""chrome_trace of tool calls: a span per call from its tool_call to its tool_result, nested in its
agent's call on the agent's lane, parallel calls on the agent's tool lanes, calls with no result."""

from __future__ import annotations

from typing import Any

import pytest

from hct_cli.store.trace import chrome_trace
from tests.store.test_trace import Journal, lane_names, of, one, result

pytestmark = pytest.mark.timeout(30)


def sent(j: Journal, at: float, index: int, tool: str, effects: str = "read", step: int = 1) -> None:
    j.add(
        at,
        "tool_call",
        "a",
        1,
        step=step,
        index=index,
        id=f"c{index}",
        tool=tool,
        effects=effects,
        arguments={"path": "secret.txt"},
        digest=f"d{step}{index}",
        speculative=False,
    )


def answered(j: Journal, at: float, index: int, tool: str, step: int = 1, **more: Any) -> None:
    data = {"step": step, "index": index, "tool": tool, "digest": f"d{step}{index}", "effects": "read", "ok": True}
    data |= {
        "duration_s": 0.2,
        "size": 321,
        "error": None,
        "text": "the answer " * 100,
        "cached": False,
        "restored": False,
    }
    j.add(at, "tool_result", "a", 1, **(data | more))


def tool_run() -> Journal:
    j = Journal()
    j.add(0.0, "run_start", run_id="r1")
    j.add(0.5, "issue", "a", 1, model="m", tier="small", digest="d")
    sent(j, 1.0, 0, "git.git_diff")  # step 1: two calls in parallel
    sent(j, 1.0, 1, "git.git_show")
    answered(j, 1.25, 0, "git.git_diff")
    answered(j, 1.5, 1, "git.git_show", ok=False, error="bad revision")
    sent(j, 2.0, 0, "git.git_log", step=2)
    answered(j, 2.25, 0, "git.git_log", step=2, cached=True)
    j.add(3.0, "result", "a", 1, **result())
    j.add(3.0, "cue", "a", 1)
    j.add(3.5, "run_end", status="completed")
    return j


def test_a_tool_call_is_a_span_from_its_call_to_its_result_nested_in_its_agent() -> None:
    trace = chrome_trace(tool_run().rows)
    call = one(trace, "X", "a@1")
    diff = one(trace, "X", "tool git.git_diff")
    assert (diff["cat"], diff["tid"], diff["ts"], diff["dur"]) == ("tool", call["tid"], 1_000_000, 250_000)
    assert call["ts"] <= diff["ts"] and diff["ts"] + diff["dur"] <= call["ts"] + call["dur"], "inside its agent's call"
    assert diff["args"] == {
        "step": 1,
        "index": 0,
        "digest": "d10",
        "parent": "a@1",
        "effects": "read",
        "size": 321,
        "ok": True,
        "error": None,
        "cached": False,
        "restored": False,
        "duration_s": 0.2,
    }
    log = one(trace, "X", "tool git.git_log")
    assert log["tid"] == call["tid"] and log["args"]["cached"] is True and log["args"]["step"] == 2
    text = str(trace)
    assert "the answer" not in text and "secret.txt" not in text, "neither the arguments nor the answer"


def test_parallel_calls_of_a_step_take_the_agents_tool_lanes() -> None:
    trace = chrome_trace(tool_run().rows)
    show = one(trace, "X", "tool git.git_show")
    assert lane_names(trace)[show["tid"]] == "a tools 1"
    assert (show["ts"], show["dur"], show["args"]["ok"], show["args"]["error"]) == (
        1_000_000,
        500_000,
        False,
        "bad revision",
    )
    # Every lane's spans nest: none overlaps another partly.
    by_lane: dict[int, list[tuple[int, int]]] = {}
    for e in of(trace, "X"):
        if e["cat"] in ("call", "tool"):
            by_lane.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_lane.values():
        for a0, a1 in spans:
            for b0, b1 in spans:
                assert not (a0 < b0 < a1 < b1), (a0, a1, b0, b1)


def test_a_call_with_no_result_journaled_ends_with_its_segment() -> None:
    j = Journal()
    j.add(0.0, "run_start", run_id="r1")
    j.add(0.5, "issue", "a", 1, model="m", tier="small", digest="d")
    sent(j, 1.0, 0, "fs.write_file", "write")
    j.add(2.0, "mesi", "a", 1, key="k", to="M")  # the process dies after this
    trace = chrome_trace(j.rows)
    write = one(trace, "X", "tool fs.write_file")
    assert (write["ts"], write["dur"]) == (1_000_000, 1_000_000)
    assert write["args"]["no_result"] is True and write["args"]["effects"] == "write"
    assert lane_names(trace)[write["tid"]] == "a", "inside the call lost with it"
