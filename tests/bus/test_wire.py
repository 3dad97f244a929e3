"""What travels on a CDB stream: a result with its notes, or a notice, survives the trip intact."""

from __future__ import annotations

from typing import Any

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.bus.wire import Result, decode_result, encode_notice, encode_result
from hct_cli.call_result import CallResult

pytestmark = pytest.mark.timeout(60)


def full_broadcast() -> Broadcast:
    return Broadcast(
        "review",
        4,
        True,
        CallResult(
            {"findings": ["a", "b"], "note": "naïve ✓"},
            "gpt-4o-mini",
            prompt_tokens=120,
            completion_tokens=45,
            cost_usd=0.000045,
            latency_s=1.25,
            tier="frontier",
            cached=True,
            worker="w1",
        ),
    )


def test_a_result_survives_the_trip_with_its_notes() -> None:
    message = full_broadcast()
    notes: list[tuple[str, dict[str, Any]]] = [
        ("retry", {"attempt": 1, "error": "rate limited", "wait_s": 0.5}),
        ("fallback", {"from": "mid", "to": "frontier", "reason": "kept failing"}),
    ]
    result = decode_result(encode_result(message, notes))
    assert result == Result("result", "review", 4, message, notes)
    assert result.message is not None and result.message.tag == "review@4"
    assert result.data == {}


def test_a_failed_result_survives_the_trip() -> None:
    failure = Broadcast("parse", 2, False, CallResult(None, None, worker="w2"), error="the model refused")
    result = decode_result(encode_result(failure))
    assert result.kind == "result"
    assert (result.station, result.version) == ("parse", 2)
    assert result.message == failure
    assert result.message is not None
    assert result.message.ok is False
    assert result.message.error == "the model refused"
    assert result.notes == []


def test_a_plain_result_keeps_its_defaults() -> None:
    message = Broadcast("s", 1, True, CallResult("text", None))
    result = decode_result(encode_result(message, []))
    assert result.message == message
    assert result.message is not None and result.message.result.worker is None and result.message.result.cached is False


def test_a_notice_becomes_a_result_without_a_message() -> None:
    text = encode_notice("reclaim", "review", 3, by="w2", **{"from": "silent"})
    result = decode_result(text)
    assert result == Result("reclaim", "review", 3, None, [], {"by": "w2", "from": "silent"})


def test_a_notice_without_data() -> None:
    result = decode_result(encode_notice("hand_back", "a", 1))
    assert (result.kind, result.station, result.version, result.message, result.data) == ("hand_back", "a", 1, None, {})


MALFORMED_RESULTS = {
    "not-json": "x",
    "list": "[]",
    "null": "null",
    "empty-object": "{}",
    "no-version": '{"station":"a"}',
    "version-not-number": '{"station":"a","version":"x"}',
    "result-without-body": '{"station":"a","version":1,"kind":"result"}',
    "tokens-not-number": '{"station":"a","version":1,"kind":"result","result":{"prompt_tokens":"x"}}',
    "notes-not-list": '{"station":"a","version":1,"kind":"result","result":{},"notes":5}',
    "note-not-object": '{"station":"a","version":1,"kind":"result","result":{},"notes":[["retry",5]]}',
    "notice-data-number": '{"station":"a","version":1,"kind":"reclaim","data":5}',
}


@pytest.mark.parametrize(
    "text",
    [
        *(pytest.param(text, id=name) for name, text in MALFORMED_RESULTS.items()),
        pytest.param('{"station":"a","version":1,"kind":"result","result":[]}', id="result-body-list"),
    ],
)
def test_a_malformed_result_raises_what_the_bus_catches(text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_result(text)
