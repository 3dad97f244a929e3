"""Tool calling through litellm: tools offered, tool calls parsed, tool results sent back.

Every call goes through litellm itself with ``mock_response`` and ``mock_tool_calls``; what
litellm received is read from its own pre-call callback, not from a stand-in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import TypeAdapter

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.program.routing import DEFAULT_TIERS
from hct_cli.providers.base import CallRequest
from hct_cli.providers.litellm_provider import (
    Endpoint,
    LiteLLMProvider,
    load_litellm,
    message_tokens,
    messages_for,
    tool_calls_of,
)
from hct_cli.providers.local import LOCAL_MODEL, LocalProvider
from hct_cli.score.model import Agent

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

MID = DEFAULT_TIERS["mid"].model
NOBODY_LISTENS = "http://127.0.0.1:9"
TOOLS: tuple[Mapping[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": "git__git_log",
            "description": "The commit log.",
            "parameters": {"type": "object", "properties": {"max_count": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "fs__read_text_file",
            "description": "A file's text.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    },
)


def mocked_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TWO_CALLS = [
    mocked_call("call_a1", "git__git_log", '{"max_count": 3}'),
    mocked_call("call_b2", "fs__read_text_file", '{"path": "README.md"}'),
]


class Received:
    """litellm's pre-call callback: what every call it made was given (called before it answers)."""

    def __init__(self) -> None:
        from litellm.integrations.custom_logger import CustomLogger

        seen: list[dict[str, Any]] = []

        class Logger(CustomLogger):
            def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
                seen.append({**kwargs, "messages": messages})

        self.logger = Logger()
        self.seen = seen


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> Iterator[Received]:
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "OLLAMA_API_BASE"):
        monkeypatch.setenv(name, NOBODY_LISTENS)  # should a call not be mocked, it is refused
    litellm = load_litellm()
    record = Received()
    monkeypatch.setattr(litellm, "callbacks", [record.logger])
    yield record


def request(turns: tuple[Mapping[str, Any], ...] = (), *, model: str = MID, step: int = 0) -> CallRequest:
    return CallRequest(
        agent=Agent(name="reviewer", index=0, prompt="p"),
        model=model,
        tier="mid",
        prompt="Review the last commits.",
        system="Be brief.",
        tools=TOOLS,
        step=step,
        turns=turns,
    )


def provider(answer: str, tool_calls: list[dict[str, Any]] | None = None) -> LiteLLMProvider:
    extra: dict[str, Any] = {"mock_response": answer}
    if tool_calls:
        extra["mock_tool_calls"] = tool_calls
    return LiteLLMProvider(mock=lambda model, attempt: extra)


def run(ours: LiteLLMProvider, req: CallRequest) -> CallResult:
    return asyncio.run(ours.call(req))


def turns_after(calls: tuple[ToolCall, ...]) -> tuple[dict[str, Any], ...]:
    """What the engine appends after a tool round: the assistant's calls, then each answer."""
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(dict(c.arguments))}}
            for c in calls
        ],
    }
    return (assistant, *({"role": "tool", "tool_call_id": c.id, "content": f"answer of {c.name}"} for c in calls))


def assert_openai_messages(messages: list[dict[str, Any]]) -> None:
    from openai.types.chat import ChatCompletionMessageParam

    adapter: TypeAdapter[Any] = TypeAdapter(list[ChatCompletionMessageParam])
    adapter.validate_python(messages, strict=True)


def test_a_round_with_two_tool_calls_is_parsed_with_the_models_ids(received: Received) -> None:
    result = run(provider("", TWO_CALLS), request())
    assert result.output == ""
    assert result.tool_calls == (
        ToolCall("call_a1", "git__git_log", {"max_count": 3}),
        ToolCall("call_b2", "fs__read_text_file", {"path": "README.md"}),
    )
    assert (result.prompt_tokens, result.completion_tokens) == (10, 20)  # litellm's mock usage
    assert result.cost_usd > 0
    [sent] = received.seen
    assert sent["optional_params"]["tools"] == [dict(tool) for tool in TOOLS]
    assert sent["optional_params"]["tool_choice"] == "auto"


@pytest.mark.parametrize("arguments", ['{"path": "README', "[1, 2]", '"a string"', "null"])
def test_arguments_that_are_not_a_json_object_keep_their_text(received: Received, arguments: str) -> None:
    calls = [mocked_call("call_x", "fs__read_text_file", arguments)]
    [tool_call] = run(provider("", calls), request()).tool_calls
    assert tool_call == ToolCall("call_x", "fs__read_text_file", {}, raw=arguments)


def test_empty_arguments_are_an_empty_object() -> None:
    message = {"tool_calls": [mocked_call("c", "git__git_log", "")]}
    assert tool_calls_of(message) == (ToolCall("c", "git__git_log", {}),)


def test_a_final_answer_after_tool_messages_sends_valid_openai_messages(received: Received) -> None:
    first = run(provider("", TWO_CALLS), request())
    turns = turns_after(first.tool_calls)
    final = run(provider("Two commits, both fine."), request(turns, step=1))
    assert final.output == "Two commits, both fine."
    assert final.tool_calls == ()
    sent = received.seen[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in sent[3:]] == ["call_a1", "call_b2"]
    assert sent[2]["tool_calls"][0]["function"] == {"name": "git__git_log", "arguments": '{"max_count": 3}'}
    assert_openai_messages(sent)
    assert received.seen[-1]["optional_params"]["tools"] == [dict(tool) for tool in TOOLS]


def test_turns_with_decoded_arguments_are_sent_as_openai_wants_them() -> None:
    turns: tuple[dict[str, Any], ...] = (
        {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "git__git_log", "arguments": {}}}]},
        {"role": "tool", "tool_call_id": "c1", "content": {"commits": 2}},
    )
    messages = messages_for(request(turns), MID)
    assert messages[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "git__git_log", "arguments": "{}"}}],
    }
    assert messages[3]["content"] == '{"commits": 2}'
    assert_openai_messages(messages)


def test_turns_follow_the_cache_breakpoint_on_a_model_that_caches_what_is_marked() -> None:
    model = DEFAULT_TIERS["frontier"].model  # Anthropic: explicit cache_control
    req = request(turns_after((ToolCall("c1", "git__git_log", {}),)), model=model)
    req.shared = "a large shared cue"
    messages = messages_for(req, model)
    assert messages[1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]


def test_a_request_without_tools_offers_none(received: Received) -> None:
    plain = CallRequest(agent=Agent(name="w", index=0, prompt="p"), model=MID, tier="mid", prompt="Hi.")
    result = run(provider("hello"), plain)
    assert result.tool_calls == ()
    assert "tools" not in received.seen[-1]["optional_params"]


def test_tokens_are_counted_offline_over_turns_and_tools() -> None:
    bare = request()
    with_turns = request(turns_after((ToolCall("c1", "git__git_log", {"max_count": 3}),)), step=1)
    assert message_tokens(MID, with_turns) > message_tokens(MID, bare) > 0


def test_the_local_provider_passes_tools_through_the_same_way(received: Received) -> None:
    """The openai-compatible local model gets the tools at its endpoint (no server: mocked)."""
    endpoint = Endpoint(f"{NOBODY_LISTENS}/v1")
    extra = {"mock_response": "", "mock_tool_calls": TWO_CALLS[:1]}
    local = LocalProvider(endpoints={LOCAL_MODEL: endpoint}, mock=lambda model, attempt: extra)
    result = run(local, request(model=LOCAL_MODEL))
    assert result.tool_calls == (ToolCall("call_a1", "git__git_log", {"max_count": 3}),)
    sent = received.seen[-1]
    assert sent["optional_params"]["tools"] == [dict(tool) for tool in TOOLS]
    assert sent["model"] == "smollm2"
    assert sent["custom_llm_provider"] == "openai"  # the openai-compatible path, as every local call
