"""A result's tool calls travel on the CDB and into the journal, and only when there are some."""

from __future__ import annotations

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.bus.wire import decode_result, encode_result
from hct_cli.call_result import CallResult, ToolCall

pytestmark = pytest.mark.timeout(60)

CALLS = (
    ToolCall("call_a1", "git__git_log", {"max_count": 3, "nested": {"paths": ["a", "b"]}}),
    ToolCall("call_b2", "fs__read_text_file", {}, raw='{"path": "README'),
)


def tool_round() -> Broadcast:
    return Broadcast("reviewer", 2, True, CallResult("", "gpt-4o-mini", 120, 15, 0.001, 0.3, "mid", tool_calls=CALLS))


def test_tool_calls_survive_the_wire() -> None:
    message = tool_round()
    result = decode_result(encode_result(message))
    assert result.message == message
    assert result.message is not None and result.message.result.tool_calls == CALLS


def test_tool_calls_survive_the_journal_row() -> None:
    message = tool_round()
    data = message.to_data()
    assert data["tool_calls"] == [call.to_data() for call in CALLS]
    assert Broadcast.from_data("reviewer", 2, data) == message


def test_a_result_without_tool_calls_has_no_such_key() -> None:
    plain = Broadcast("writer", 1, True, CallResult("text", "gpt-4o-mini", 10, 20, 0.0, 0.1, "mid"))
    assert "tool_calls" not in plain.to_data()
    assert Broadcast.from_data("writer", 1, plain.to_data()).result.tool_calls == ()
