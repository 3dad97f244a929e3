"""Turn a run's journaled events into Chrome trace-event JSON, for Perfetto or chrome://tracing.

The output is the "JSON Object Format": ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``,
times in microseconds from the earliest event. Everything sits in process 1. Lane (tid) 0 is the conductor:
the segments of the run (one per ``--resume``) and every run-level event. Each station gets its own lane,
numbered by first appearance.

- A model call is a complete ("X") event ``"{station}@{version}"`` from its ``issue`` to its ``result``; a call
  whose segment ended without a result (the process died) ends at that segment's last event, args
  ``{"lost": true}``; one that a speculation's ``squash`` or a ``caesura`` threw away while it was out ends
  there, args ``{"squashed": true}``.
- A ``judge`` result has no ``issue``: it is drawn as ``"{station}@{version} judge"`` (cat ``"judge"``), ending
  at its ``at`` and lasting its ``latency_s``.
- An ``issue`` with ``restored: true`` made no real call (the result came from an earlier segment's journal):
  it is an instant (cat ``"restored"``); its result, if one is journaled, is neither drawn again nor added to
  the cost, since that money was spent, and counted, in the earlier segment.
- A tool call is a complete event ``"tool {server.tool}"`` (cat ``"tool"``) from its ``tool_call`` to its
  ``tool_result``, args ``effects``, ``size``, ``ok``, ``error``, ``cached``, ``restored`` (and ``step``,
  ``index``, ``digest``, ``parent``: the agent's call ``"{station}@{version}"``); never the arguments or the
  answer. It nests in its agent's call on the agent's lane; calls of one step that ran in parallel overlap, and
  a viewer nests only what does not, so the others go to the agent's own tool lanes (``"{station} tools 1"``,
  ...). A call with no result journaled in its segment ends at the segment's last event, args
  ``{"no_result": true}``: in doubt, if it was a write.
- A ``cost_usd`` counter gives the running total after each result.
- The kinds in ``_INSTANTS`` (gates, fails, skips, checkpoints, ...) are instants; the rest (``ready``,
  ``cue``, ``mesi``, kinds added later) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from itertools import groupby
from typing import Any

from hct_cli.jsonio import dumps

__all__ = ["chrome_trace"]

_PID = 1
_INSTANTS = frozenset(
    {"run_start", "run_end", "gate", "fail", "skip", "caesura", "downbeat", "squash", "vamp", "tacet"}
    | {"replay", "retry", "fallback", "step_down", "boost", "budget_stop"}
)
# Args of a tool call's span, from its result.
_TOOL_ARGS = ("effects", "size", "ok", "error", "cached", "restored", "duration_s")
# Args of a call event, copied from its result when present.
_CALL_ARGS = ("model", "tier", "cost_usd", "prompt_tokens", "completion_tokens", "cached", "ok", "error")


def _args(data: Mapping[str, Any]) -> dict[str, Any]:
    # A call's output can be pages of text: it bloats the file and no viewer shows it usefully.
    # The round trip makes sure whatever else the journal holds can be dumped.
    kept = {k: v for k, v in data.items() if k != "output"}
    return dict(json.loads(dumps(kept)))


def _event(ph: str, name: str, tid: int, args: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": name, "ph": ph, "pid": _PID, "tid": tid, **fields, "args": dict(args)}


def _is_judge(event: Mapping[str, Any]) -> bool:
    return event["kind"] == "result" and (event.get("data") or {}).get("purpose") == "judge"


def _thrown(kind: str, key: tuple[str, int], data: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The calls a ``squash`` (its own) or a ``caesura`` (its map) threw away."""
    if kind == "squash":
        return [key]
    if kind == "caesura":
        return [(str(agent), int(version)) for agent, version in (data.get("squashed") or {}).items()]
    return []


def chrome_trace(events: Iterable[Mapping[str, Any]], *, run_id: str = "", score: str = "") -> dict[str, Any]:
    """The Chrome trace of ``events`` (journal rows, in (segment, seq) order), ready for ``json.dumps``."""
    rows = list(events)
    # A judge started before its result was journaled: time zero is the earliest start, not the earliest event.
    starts = [float(e["at"]) for e in rows]
    starts += [float(e["at"]) - float(e["data"].get("latency_s", 0.0)) for e in rows if _is_judge(e)]
    t0 = min(starts, default=0.0)

    def us(at: float) -> int:
        return max(0, round((at - t0) * 1e6))

    lanes: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    spent = 0.0

    def span(name: str, cat: str, tid: int, start: float, end: float, args: Mapping[str, Any]) -> None:
        out.append(_event("X", name, tid, args, cat=cat, ts=us(start), dur=max(0, us(end) - us(start))))

    # Tool calls, placed once every call's span is known: (station, start, end, name, args).
    tools: list[tuple[str, float, float, str, dict[str, Any]]] = []
    for segment, group in groupby(rows, key=lambda e: int(e["segment"])):
        seg = list(group)
        sent: dict[tuple[str, int, Any, Any], Mapping[str, Any]] = {}  # tool calls without a result yet
        # Issues are paired with results within a segment: a resume never answers an earlier segment's call.
        pending: dict[tuple[str, int], Mapping[str, Any]] = {}
        restored: set[tuple[str, int]] = set()
        for e in seg:
            kind, station, data, at = str(e["kind"]), e.get("station"), e.get("data") or {}, float(e["at"])
            tid = 0 if station is None else lanes.setdefault(str(station), len(lanes) + 1)
            key = (str(station), int(e.get("version") or 0))
            name = f"{station}@{key[1]}"
            call = data.get("purpose", "call") == "call"
            if not run_id and kind == "run_start":
                run_id = str(data.get("run_id", ""))
            if kind == "tool_call":
                sent[(*key, data.get("step"), data.get("index"))] = e
            elif kind == "tool_result":
                call_event = sent.pop((*key, data.get("step"), data.get("index")), None)
                start = float(call_event["at"]) if call_event is not None else at - float(data.get("duration_s") or 0.0)
                args = {k: data[k] for k in _TOOL_ARGS if k in data}
                where = {
                    "step": data.get("step"),
                    "index": data.get("index"),
                    "digest": data.get("digest"),
                    "parent": name,
                }
                tools.append((str(station), start, at, f"tool {data.get('tool')}", {**where, **args}))
            elif kind == "issue" and data.get("restored"):
                restored.add(key)
                out.append(_event("i", name, tid, _args(data), cat="restored", s="t", ts=us(at)))
            elif kind == "issue":
                pending[key] = e
            elif kind == "result" and call and key in restored:
                restored.discard(key)  # drawn at its issue, paid for in the segment that made the call
            elif kind == "result":
                args = {k: data[k] for k in _CALL_ARGS if k in data}
                issue = pending.pop(key, None) if call else None
                if issue is not None:
                    span(name, "call", tid, float(issue["at"]), at, {**_args(issue.get("data") or {}), **args})
                else:  # a judge, a tool loop's round (or a call whose issue is missing): its latency is all we know
                    start = at - float(data.get("latency_s", 0.0))
                    purpose = str(data.get("purpose", "call"))
                    label = (
                        name if call else f"{name} round {data.get('step')}" if purpose == "round" else f"{name} judge"
                    )
                    span(label, "call" if call else purpose, tid, start, at, args)
                spent += float(data.get("cost_usd", 0.0))
                out.append(_event("C", "cost_usd", 0, {"cost_usd": round(spent, 10)}, ts=us(at)))
            elif kind in _INSTANTS:
                for thrown in _thrown(kind, key, data):  # a call still out ends where it was squashed
                    issue = pending.pop(thrown, None)
                    if issue is not None:
                        args = {**_args(issue.get("data") or {}), "squashed": True}
                        span(f"{thrown[0]}@{thrown[1]}", "call", lanes.get(thrown[0], 0), float(issue["at"]), at, args)
                label = kind if station is None else f"{kind} {name}"
                out.append(_event("i", label, tid, _args(data), cat=kind, s="t", ts=us(at)))
        first, last = float(seg[0]["at"]), float(seg[-1]["at"])
        for (station, version, step, index), e in sent.items():  # sent, and no result journaled
            data = e.get("data") or {}
            where = {"step": step, "index": index, "digest": data.get("digest"), "parent": f"{station}@{version}"}
            args = {**where, "effects": data.get("effects"), "no_result": True}
            tools.append((station, float(e["at"]), last, f"tool {data.get('tool')}", args))
        for (station, version), issue in pending.items():  # still out when the segment ended: the process died
            span(f"{station}@{version}", "call", lanes.get(station, 0), float(issue["at"]), last, {"lost": True})
        span(f"segment {segment}", "segment", 0, first, last, {"segment": segment})

    out.extend(_tool_spans(tools, out, lanes, us))
    meta = [_event("M", "process_name", 0, {"name": score or "hct"})]
    for station, tid in [("conductor", 0), *lanes.items()]:
        meta.append(_event("M", "thread_name", tid, {"name": station}))
        # Viewers sort lanes by name unless told otherwise; first appearance reads like the score.
        meta.append(_event("M", "thread_sort_index", tid, {"sort_index": tid}))
    return {"traceEvents": meta + out, "displayTimeUnit": "ms", "otherData": {"run_id": run_id, "score": score}}


def _tool_spans(
    tools: list[tuple[str, float, float, str, dict[str, Any]]],
    drawn: list[dict[str, Any]],
    lanes: dict[str, int],
    us: Callable[[float], int],
) -> list[dict[str, Any]]:
    """Tool calls as spans: on the agent's lane, nested in its call, when they fit there (inside a
    call, after the previous tool call there); else on the first of the agent's tool lanes free
    at their start (``lanes`` gains them)."""
    calls: dict[int, list[tuple[int, int]]] = {}
    for e in drawn:
        if e["ph"] == "X" and e.get("cat") == "call":
            calls.setdefault(int(e["tid"]), []).append((int(e["ts"]), int(e["ts"]) + int(e["dur"])))
    free: dict[int, int] = {}  # lane -> when its last tool span ends
    spans: list[dict[str, Any]] = []
    for station, start, end, name, args in sorted(tools, key=lambda t: (t[1], t[2])):
        begin, finish = us(start), max(us(start), us(end))
        own = lanes.setdefault(station, len(lanes) + 1)
        inside = any(a <= begin and finish <= b for a, b in calls.get(own, ()))
        tid, extra = own, 0
        while (tid == own and not inside) or free.get(tid, -1) > begin:
            extra += 1
            tid = lanes.setdefault(f"{station} tools {extra}", len(lanes) + 1)
        free[tid] = finish
        spans.append(_event("X", name, tid, args, cat="tool", ts=begin, dur=finish - begin))
    return spans
