"""The scripted model: ``simulate.tool_calls`` gives each round's calls, then the final answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from hct_cli.call_result import ToolCall
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import Agent, Simulate

pytestmark = pytest.mark.timeout(60)

MODEL = "gpt-4o-mini"
SCRIPT = [
    [{"tool": "git.git_log", "args": {"max_count": 3}}, {"tool": "git.git_status"}],
    [{"tool": "fs.read_text_file", "args": {"path": "README.md"}}],
]


def scripted(script: Any = SCRIPT, **simulate: Any) -> Agent:
    return Agent(name="reviewer", index=0, prompt="p", simulate=Simulate.from_data({"tool_calls": script, **simulate}))


def request(who: Agent, step: int = 0, turns: tuple[dict[str, Any], ...] = ()) -> CallRequest:
    return CallRequest(agent=who, model=MODEL, tier="mid", prompt="Review the change.", step=step, turns=turns)


def turns_after(calls: tuple[ToolCall, ...], answer: str = "ok") -> tuple[dict[str, Any], ...]:
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))}}
            for c in calls
        ],
    }
    return (assistant, *({"role": "tool", "tool_call_id": c.id, "content": answer} for c in calls))


def test_each_scripted_round_answers_its_calls_then_the_final_answer() -> None:
    provider = SimulatedProvider(seed=3)
    who = scripted(output="the review")
    first = provider.plan(request(who))
    assert first.output == ""
    assert first.tool_calls == (
        ToolCall("call_0_0", "git.git_log", {"max_count": 3}),
        ToolCall("call_0_1", "git.git_status", {}),
    )
    turns = turns_after(first.tool_calls)
    second = provider.plan(request(who, 1, turns))
    assert second.tool_calls == (ToolCall("call_1_0", "fs.read_text_file", {"path": "README.md"}),)
    turns += turns_after(second.tool_calls)
    final = provider.plan(request(who, 2, turns))
    assert final.tool_calls == ()
    assert final.output == "the review"


def test_prompt_tokens_grow_with_the_turns_and_tool_rounds_are_small() -> None:
    provider = SimulatedProvider(seed=3)
    who = scripted()
    first = provider.plan(request(who))
    turns = turns_after(first.tool_calls, answer="x" * 400)
    second = provider.plan(request(who, 1, turns))
    assert second.prompt_tokens >= first.prompt_tokens + 100  # 400 characters of tool output at least
    calls_json = len(json.dumps([c.to_data() for c in first.tool_calls], sort_keys=True))
    assert first.completion_tokens == calls_json // 4
    assert first.completion_tokens < 40  # below any drawn answer's minimum


def test_rounds_are_deterministic_and_keyed_on_the_turns() -> None:
    who = scripted(latency_ms=[10, 500])
    turns = turns_after(SimulatedProvider(seed=1).plan(request(who)).tool_calls)
    a = SimulatedProvider(seed=1).plan(request(who, 1, turns))
    b = SimulatedProvider(seed=1).plan(request(who, 1, turns))
    assert a == b
    other = turns_after(a.tool_calls, answer="a different tool answer")
    c = SimulatedProvider(seed=1).plan(request(who, 1, other))
    assert c.latency_s != a.latency_s  # other turns, another draw
    d = SimulatedProvider(seed=2).plan(request(who, 1, turns))
    assert d.latency_s != a.latency_s


def test_a_prompt_token_figure_still_grows_with_the_turns() -> None:
    who = scripted(prompt_tokens=100)
    first = SimulatedProvider().plan(request(who))
    assert first.prompt_tokens == 100
    second = SimulatedProvider().plan(request(who, 1, turns_after(first.tool_calls, "y" * 80)))
    assert second.prompt_tokens > 100


def test_without_a_script_no_tool_calls_and_the_same_draw_as_before() -> None:
    plain = Agent(name="reviewer", index=0, prompt="p", simulate=Simulate.from_data({}))
    provider = SimulatedProvider(seed=5)
    base = provider.plan(request(plain))
    assert base.tool_calls == ()
    # tools offered, step 0, no turns: the messages are the same, and so is every draw
    offered = replace(request(plain), tools=({"type": "function", "function": {"name": "git_log"}},))
    assert provider.plan(offered) == base


def test_call_sleeps_and_returns_the_tool_round() -> None:
    result = asyncio.run(SimulatedProvider(time_scale=0.0).call(request(scripted())))
    assert [c.id for c in result.tool_calls] == ["call_0_0", "call_0_1"]
