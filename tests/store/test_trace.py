"""chrome_trace: journaled events become a Chrome trace with the right spans, lanes, instants and costs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hct_cli.store.trace import chrome_trace

T0 = 1_700_000_000.0


class Journal:
    """Builds journal rows in (segment, seq) order, the way the journal yields them."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.segment = 1

    def add(self, at: float, kind: str, station: str | None = None, version: int = 0, **data: Any) -> None:
        self.rows.append(
            {
                "segment": self.segment,
                "seq": len(self.rows) + 1,
                "at": T0 + at,
                "kind": kind,
                "station": station,
                "version": version,
                "data": data,
            }
        )


def result(cost: float = 0.01, purpose: str = "call", latency: float = 0.0, **more: Any) -> dict[str, Any]:
    return {
        "purpose": purpose,
        "ok": True,
        "output": "x" * 10_000,
        "model": "m",
        "tier": "small",
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "cost_usd": cost,
        "latency_s": latency,
        "cached": False,
        "worker": None,
        **more,
    }


def of(trace: dict[str, Any], ph: str, name: str | None = None) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == ph and (name is None or e["name"] == name)]


def one(trace: dict[str, Any], ph: str, name: str) -> dict[str, Any]:
    found = of(trace, ph, name)
    assert len(found) == 1, found
    return found[0]


def lane_names(trace: dict[str, Any]) -> dict[int, str]:
    return {e["tid"]: e["args"]["name"] for e in of(trace, "M", "thread_name")}


def simple_run() -> Journal:
    j = Journal()
    j.add(0.0, "run_start", agents=2, dispatch="eager", run_id="r1")
    j.add(0.1, "ready", "a", 1)
    j.add(0.25, "issue", "a", 1, model="m", tier="small", digest="d1")
    j.add(1.75, "result", "a", 1, **result(cost=0.02))
    j.add(1.8, "cue", "a", 1, cost_usd=0.02, keys=["k"])
    j.add(2.0, "issue", "b", 1, model="m", tier="small", digest="d2")
    j.add(2.5, "result", "b", 1, **result(cost=0.03, ok=False, error="boom"))
    j.add(2.6, "fail", "b", 1, error="boom")
    j.add(3.0, "run_end", status="failed", cost_usd=0.05)
    return j


def test_call_span_runs_from_issue_to_result() -> None:
    trace = chrome_trace(simple_run().rows, run_id="r1", score="demo")
    a = one(trace, "X", "a@1")
    assert (a["ts"], a["dur"], a["cat"]) == (250_000, 1_500_000, "call")
    assert a["args"]["model"] == "m" and a["args"]["tier"] == "small"
    assert a["args"]["cost_usd"] == 0.02 and a["args"]["ok"] is True and a["args"]["cached"] is False
    assert (a["args"]["prompt_tokens"], a["args"]["completion_tokens"]) == (7, 3)
    assert "output" not in a["args"]
    b = one(trace, "X", "b@1")
    assert (b["ts"], b["dur"]) == (2_000_000, 500_000)
    assert b["args"]["ok"] is False and b["args"]["error"] == "boom"
    assert trace["displayTimeUnit"] == "ms"
    assert trace["otherData"] == {"run_id": "r1", "score": "demo"}


def test_lanes_follow_first_appearance_with_conductor_on_zero() -> None:
    trace = chrome_trace(simple_run().rows, score="demo")
    assert lane_names(trace) == {0: "conductor", 1: "a", 2: "b"}
    assert one(trace, "M", "process_name")["args"] == {"name": "demo"}
    assert {e["tid"]: e["args"]["sort_index"] for e in of(trace, "M", "thread_sort_index")} == {0: 0, 1: 1, 2: 2}
    assert one(trace, "X", "a@1")["tid"] == 1 and one(trace, "X", "b@1")["tid"] == 2
    assert all(e["pid"] == 1 for e in trace["traceEvents"])
    # run_id falls back to the one run_start journaled.
    assert trace["otherData"]["run_id"] == "r1"


def test_instants_carry_their_data_on_the_right_lane() -> None:
    trace = chrome_trace(simple_run().rows)
    fail = one(trace, "i", "fail b@1")
    assert (fail["tid"], fail["ts"], fail["s"], fail["args"]) == (2, 2_600_000, "t", {"error": "boom"})
    end = one(trace, "i", "run_end")
    assert (end["tid"], end["ts"], end["args"]["status"]) == (0, 3_000_000, "failed")
    # ready and cue are too chatty to draw.
    assert not [e for e in trace["traceEvents"] if e.get("cat") in ("ready", "cue")]


def test_cost_counter_is_a_running_total() -> None:
    trace = chrome_trace(simple_run().rows)
    counters = [(e["ts"], e["args"]["cost_usd"]) for e in of(trace, "C", "cost_usd")]
    assert counters == [(1_750_000, pytest.approx(0.02)), (2_500_000, pytest.approx(0.05))]


def test_lost_call_ends_at_its_segments_last_event_and_resume_is_a_second_segment() -> None:
    j = Journal()
    j.add(0.0, "run_start", run_id="r2")
    j.add(1.0, "issue", "a", 1, model="m", tier="small", digest="d")
    j.add(1.5, "issue", "b", 1, model="m", tier="small", digest="e")
    j.add(2.0, "result", "b", 1, **result(cost=0.5))
    j.add(4.0, "gate", "b", 1, passed=True, reason="ok")  # then the process died with a@1 still out
    j.segment = 2
    j.add(10.0, "run_start", run_id="r2")
    j.add(10.5, "issue", "b", 1, model="m", tier="small", digest="e", restored=True)
    j.add(10.5, "result", "b", 1, **result(cost=0.5))
    j.add(11.0, "issue", "a", 1, model="m", tier="small", digest="d")
    j.add(12.0, "result", "a", 1, **result(cost=0.25))
    j.add(13.0, "run_end", status="ok", cost_usd=0.75)
    trace = chrome_trace(j.rows)

    spans = of(trace, "X", "a@1")
    assert [(e["ts"], e["dur"], e["args"].get("lost", False)) for e in spans] == [
        (1_000_000, 3_000_000, True),
        (11_000_000, 1_000_000, False),
    ]
    assert spans[0]["args"] == {"lost": True}
    segments = [(e["name"], e["tid"], e["ts"], e["dur"]) for e in of(trace, "X") if e["cat"] == "segment"]
    assert segments == [("segment 1", 0, 0, 4_000_000), ("segment 2", 0, 10_000_000, 3_000_000)]
    # The restored call is an instant, not a second span, and its cost is not counted twice.
    assert len(of(trace, "X", "b@1")) == 1
    restored = [e for e in of(trace, "i", "b@1") if e["cat"] == "restored"]
    assert [e["ts"] for e in restored] == [10_500_000]
    assert [e["args"]["cost_usd"] for e in of(trace, "C")] == [pytest.approx(0.5), pytest.approx(0.75)]
    assert lane_names(trace) == {0: "conductor", 1: "a", 2: "b"}


def test_judge_is_drawn_back_from_its_result_and_never_goes_negative() -> None:
    j = Journal()
    j.add(0.0, "run_start", run_id="r3")
    j.add(0.5, "result", "a", 2, **result(purpose="judge", latency=2.0, cost=0.1))
    j.add(1.0, "run_end", status="ok")
    trace = chrome_trace(j.rows)
    judge = one(trace, "X", "a@2 judge")
    # The judge started 1.5 s before run_start, so time zero moves back to its start.
    assert (judge["cat"], judge["ts"], judge["dur"]) == ("judge", 0, 2_000_000)
    assert one(trace, "i", "run_start")["ts"] == 1_500_000
    assert judge["args"]["cost_usd"] == 0.1
    assert [e["args"]["cost_usd"] for e in of(trace, "C")] == [pytest.approx(0.1)]
    assert all(e.get("ts", 0) >= 0 and e.get("dur", 0) >= 0 for e in trace["traceEvents"])


def test_unknown_kinds_are_tolerated_and_output_round_trips_through_json() -> None:
    j = simple_run()
    j.add(3.5, "something_new", "c", 4, whatever={"nested": [1, 2]})
    j.add(3.6, "mesi", "a", 1, state="S")
    j.add(3.7, "caesura", None, 0, checkpoint="cp", squashed={"a": 1}, blob=object())
    trace = chrome_trace(j.rows, run_id="r1", score="demo")
    assert json.loads(json.dumps(trace)) == trace
    caesura = one(trace, "i", "caesura")
    assert caesura["args"]["squashed"] == {"a": 1} and isinstance(caesura["args"]["blob"], str)
    # A station seen only in an unknown event still gets a lane, named, after the known ones.
    assert lane_names(trace)[3] == "c"
    assert all(e.get("ts", 0) >= 0 for e in trace["traceEvents"])


def test_no_events_is_an_empty_trace_with_metadata() -> None:
    trace = chrome_trace([], score="s")
    assert [e["name"] for e in trace["traceEvents"]] == ["process_name", "thread_name", "thread_sort_index"]
    assert json.loads(json.dumps(trace)) == trace


def test_a_call_squashed_in_flight_ends_at_its_squash_not_lost() -> None:
    j = Journal()
    j.add(0.0, "run_start", run_id="r3")
    j.add(1.0, "issue", "a", 1, model="m", tier="small", digest="d")
    j.add(2.0, "result", "a", 1, **result())
    j.add(2.0, "issue", "b", 1, model="m", tier="small", digest="e")  # fired on the held a@1
    j.add(3.0, "squash", "b", 1, on="a@1", cost_usd=0.0, call=True)
    j.add(3.0, "issue", "c", 1, model="m", tier="small", digest="f")
    j.add(4.0, "caesura", "a", 1, reason="stop", checkpoint=0, squashed={"a": 1, "c": 1})
    j.add(5.0, "run_end", status="caesura", cost_usd=0.01)
    trace = chrome_trace(j.rows)
    spans = {e["name"]: (e["ts"], e["dur"], e["args"].get("squashed"), e["args"].get("lost")) for e in of(trace, "X")}
    assert spans["b@1"] == (2_000_000, 1_000_000, True, None)
    assert spans["c@1"] == (3_000_000, 1_000_000, True, None)
    assert spans["a@1"] == (1_000_000, 1_000_000, None, None)  # answered before the caesura: drawn as it ran
