"""The L5 cache and tool rounds: tools and turns are part of a call's identity; a round that
asked for tools is not cached (its final answer is)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.providers.base import CallRequest
from hct_cli.score.model import Agent
from hct_cli.store.cache import ResultCache, cache_key
from hct_cli.store.cached import CachingProvider
from hct_cli.store.home import connect

pytestmark = pytest.mark.timeout(60)

TOOL = {"type": "function", "function": {"name": "git__git_log", "parameters": {"type": "object"}}}
TURNS = (
    {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "git__git_log"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "two commits"},
)


def request(**changes: object) -> CallRequest:
    req = CallRequest(Agent(name="reviewer", index=0), "gpt-4o-mini", "mid", "Review.", system="Be brief.")
    for name, value in changes.items():
        setattr(req, name, value)
    return req


class Scripted:
    """A tool round for a request without turns, a final answer after them; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def call(self, req: CallRequest) -> CallResult:
        self.calls += 1
        if not req.turns:
            return CallResult("", req.model, 50, 5, 0.1, tool_calls=(ToolCall("c1", "git__git_log", {}),))
        return CallResult("fine", req.model, 80, 10, 0.2)


def test_tools_and_turns_change_the_key_and_their_absence_keeps_it() -> None:
    plain = cache_key("live", request())
    offered = cache_key("live", request(tools=(TOOL,)))
    after = cache_key("live", request(tools=(TOOL,), turns=TURNS))
    other_answer = ({**TURNS[0]}, {**TURNS[1], "content": "three commits"})
    assert len({plain, offered, after, cache_key("live", request(tools=(TOOL,), turns=other_answer))}) == 4
    assert cache_key("live", request(tools=(), turns=())) == plain
    assert cache_key("live", request(tools=(TOOL,), turns=TURNS)) == after


def test_a_tool_round_is_not_cached_and_its_final_answer_is(tmp_path: Path) -> None:
    db = connect(home=tmp_path)
    inner = Scripted()
    provider = CachingProvider(inner, ResultCache(db))

    async def rounds() -> tuple[CallResult, CallResult]:
        first = await provider.call(request(tools=(TOOL,)))
        final = await provider.call(request(tools=(TOOL,), turns=TURNS))
        return first, final

    first, final = asyncio.run(rounds())
    assert first.tool_calls and not first.cached
    assert final.output == "fine" and not final.cached
    again_first, again_final = asyncio.run(rounds())
    assert again_first.tool_calls == first.tool_calls and not again_first.cached  # asked again
    assert again_final.cached and again_final.output == "fine"
    assert inner.calls == 3  # two tool rounds, one final answer
