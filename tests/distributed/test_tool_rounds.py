"""Tool rounds in distributed mode: a work item carries the tools, the step and the turns (and the
agent's script); the worker's answer carries the tool calls back, over a real Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.bus.wire import decode_result, encode_result
from hct_cli.call_result import CallResult, ToolCall
from hct_cli.distributed.conductor import ConductorBus
from hct_cli.distributed.remote import RemoteProvider
from hct_cli.distributed.work import Mode, decode_work, encode_work
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import agent_from_data
from tests.distributed.test_worker import HANG_S, new_run_id, serving, until

pytestmark = pytest.mark.timeout(60)

MODE = Mode("simulated", 7, 1e-3)
TOOLS = ({"type": "function", "function": {"name": "git__git_log", "parameters": {"type": "object"}}},)
AGENT = agent_from_data(
    "reviewer",
    0,
    {
        "prompt": "Review.",
        "simulate": {
            "latency_ms": [10, 40],
            "tool_calls": [
                [{"tool": "git.git_log", "args": {"max_count": 3, "paths": ["a.py"]}}, {"tool": "git.git_status"}],
            ],
        },
    },
)


def turns_after(calls: tuple[ToolCall, ...]) -> tuple[dict[str, Any], ...]:
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))}}
            for c in calls
        ],
    }
    return (assistant, *({"role": "tool", "tool_call_id": c.id, "content": "result"} for c in calls))


def request(step: int = 0, turns: tuple[dict[str, Any], ...] = ()) -> CallRequest:
    return CallRequest(AGENT, "gpt-4o-mini", "mid", "Review.", version=2, tools=TOOLS, step=step, turns=turns)


def test_a_work_item_carries_tools_step_turns_and_the_script() -> None:
    first = SimulatedProvider(7).plan(request())
    original = request(1, turns_after(first.tool_calls))
    decoded = decode_work(encode_work("run1", original, MODE)).request
    assert decoded.tools == original.tools
    assert (decoded.step, decoded.turns) == (1, original.turns)
    assert decoded.agent.simulate.tool_calls == AGENT.simulate.tool_calls
    assert SimulatedProvider(7).plan(decoded) == SimulatedProvider(7).plan(original)
    assert SimulatedProvider(7).plan(decode_work(encode_work("run1", request(), MODE)).request) == first
    assert first.tool_calls  # the script survived: the worker plays it


def test_a_work_item_without_tools_has_no_such_keys() -> None:
    plain = CallRequest(agent_from_data("w", 0, {"prompt": "p"}), "gpt-4o-mini", "mid", "Hi.")
    data = json.loads(encode_work("run1", plain, MODE))
    assert not {"tools", "step", "turns"} & set(data)
    assert "simulate" not in data["agent"]


def test_a_worker_answers_a_tool_round_and_then_the_final_answer(redis_server: Any) -> None:
    run_id = new_run_id()

    async def scenario() -> tuple[CallResult, CallResult]:
        bus = await ConductorBus.open(redis_server.url, run_id, ("mid",))
        try:
            provider = RemoteProvider(MODE, bus)
            async with serving(redis_server.url, "w-tools") as worker:
                await until(lambda: worker.joined(run_id), "the worker to join the run")
                first = await asyncio.wait_for(provider.call(request()), HANG_S)
                final = await asyncio.wait_for(provider.call(request(1, turns_after(first.tool_calls))), HANG_S)
        finally:
            await bus.close()
        return first, final

    first, final = asyncio.run(scenario())
    local = SimulatedProvider(7).plan(request())
    assert first.tool_calls == local.tool_calls
    assert [c.name for c in first.tool_calls] == ["git.git_log", "git.git_status"]
    assert first.tool_calls[0].arguments == {"max_count": 3, "paths": ["a.py"]}
    assert (first.prompt_tokens, first.completion_tokens) == (local.prompt_tokens, local.completion_tokens)
    assert first.worker == "w-tools"
    assert final.tool_calls == ()
    assert final.output == SimulatedProvider(7).plan(request(1, turns_after(first.tool_calls))).output


class _Bus:
    """An Issuer that keeps what is issued and lets the test answer: no Redis needed to order
    a late duplicate against the next round."""

    run_id = "dup-run"

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.listeners: list[Any] = []

    async def issue(self, payload: str, tier: str | None, affinity: str | None = None) -> None:
        self.issued.append(payload)

    def listen(self, listener: Any) -> None:
        self.listeners.append(listener)

    def when_lost(self, callback: Any) -> None:
        pass

    def hear(self, text: str) -> None:
        for listener in self.listeners:
            listener(decode_result(text))


def test_a_late_duplicate_of_round_k_does_not_answer_round_k_plus_one() -> None:
    bus = _Bus()
    provider = RemoteProvider(MODE, bus)
    first_round = Broadcast("reviewer", 1, True, CallResult("", "gpt-4o-mini", tool_calls=(ToolCall("c0", "x", {}),)))
    answer = Broadcast("reviewer", 1, True, CallResult("the answer", "gpt-4o-mini"))

    async def scenario() -> CallResult:
        request = CallRequest(AGENT, "gpt-4o-mini", "mid", "Review.", step=1, tools=TOOLS)
        task = asyncio.ensure_future(provider.call(request))
        await until(lambda: len(bus.issued) == 1, "round 1 is issued")
        bus.hear(encode_result(first_round))  # round 0's result, redelivered late
        await asyncio.sleep(0)
        assert not task.done(), "round 1 took round 0's duplicate"
        bus.hear(encode_result(answer, step=1))
        return await task

    result = asyncio.run(scenario())
    assert result.output == "the answer"
    assert provider.duplicates == 1
