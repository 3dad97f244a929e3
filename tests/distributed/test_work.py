"""The wire format of distributed mode: a work item survives the trip intact.

A work item must carry everything the simulated provider draws from, so a worker (or a second
worker, after a redelivery) answers exactly as the conductor would have in process.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.bus.wire import decode_result, encode_result
from hct_cli.call_result import CallResult
from hct_cli.distributed.work import Mode, Work, decode_work, encode_work
from hct_cli.program.routing import Route
from hct_cli.providers.base import CallRequest
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.score.model import Agent, Simulate

pytestmark = pytest.mark.timeout(60)

FULL_AGENT = Agent(
    name="review",
    index=3,
    prompt="unused on the wire: the prompt travels rendered",
    max_tokens=321,
    tempo="allegro",
    timeout_s=12.5,
    writes=("findings", "summary"),
    simulate=Simulate(
        latency_ms=(40.0, 90.0),
        prompt_tokens=150,
        output_tokens=200,
        pass_rate=0.25,
        output={"verdict": "ok", "items": [1, 2, "três"]},
    ),
)
PLAIN_AGENT = Agent(name="plain", index=0)  # every figure derived, nothing optional set
ONE_WRITE_AGENT = Agent(name="notes", index=1, tempo="presto", writes=("notes",), simulate=Simulate(latency_ms=(5, 5)))
MULTI_WRITE_AGENT = Agent(name="split", index=2, tempo="largo", writes=("a", "b"), simulate=Simulate(output_tokens=64))

FALLBACKS = (
    Route("frontier", "claude-sonnet-4-5", "fallback from mid"),
    Route(None, "ollama/llama3.1", "last resort"),
)


def full_request() -> CallRequest:
    return CallRequest(
        FULL_AGENT,
        "gpt-4o-mini",
        "mid",
        "Review this — naïve ✓ unicode\nline two {{ not a template }}",
        "Reference frame (immutable; applies to every answer):\n- objective: find defects",
        version=4,
        attempt=3,
        context={"cues": {"parse": "stays home"}},
        fallbacks=FALLBACKS,
        affinity="w7",
    )


def requests() -> list[CallRequest]:
    return [
        full_request(),
        CallRequest(PLAIN_AGENT, "gpt-4o-mini", None, "p"),
        CallRequest(ONE_WRITE_AGENT, "claude-sonnet-4-5", "frontier", "write notes", "sys", 2, 1),
        CallRequest(MULTI_WRITE_AGENT, "ollama/llama3.1", "local", "split it", "", 9, 8, fallbacks=FALLBACKS[:1]),
    ]


MODES = [
    Mode("simulated", seed=7, time_scale=0.25),
    Mode(),
    Mode("models", endpoints={"gpt-4o-mini": "http://127.0.0.1:8000/v1", "ollama/llama3.1": "http://h:1"}, local=True),
    Mode("models"),
]


def roundtrip(request: CallRequest, mode: Mode, run: str = "run-1") -> Work:
    text = encode_work(run, request, mode)
    json.loads(text)  # the wire text is plain JSON
    return decode_work(text)


def test_a_work_item_keeps_every_field_a_worker_needs() -> None:
    request = full_request()
    mode = Mode("simulated", seed=7, time_scale=0.25)
    work = roundtrip(request, mode, run="abc123")
    got = work.request
    assert work.run == "abc123"
    assert work.mode == mode
    assert work.tag == "review@4"
    assert got.model == "gpt-4o-mini"
    assert got.tier == "mid"
    assert got.prompt == request.prompt
    assert got.system == request.system
    assert got.version == 4
    assert got.attempt == 3
    assert got.fallbacks == FALLBACKS
    assert all(isinstance(route, Route) for route in got.fallbacks)
    agent = got.agent
    assert agent.name == "review"
    assert agent.max_tokens == 321
    assert agent.tempo == "allegro"
    assert agent.timeout_s == 12.5
    assert agent.writes == ("findings", "summary")
    assert agent.simulate == FULL_AGENT.simulate
    assert agent.simulate.latency_ms == (40.0, 90.0)
    assert agent.simulate.output == {"verdict": "ok", "items": [1, 2, "três"]}


def test_a_work_item_leaves_the_context_home() -> None:
    text = encode_work("r", full_request(), Mode())
    assert "stays home" not in text
    assert decode_work(text).request.context == {}


def test_defaults_survive_the_trip() -> None:
    work = roundtrip(CallRequest(PLAIN_AGENT, "gpt-4o-mini", None, "p"), Mode())
    got = work.request
    assert got.tier is None
    assert got.system == ""
    assert (got.version, got.attempt) == (1, 0)
    assert got.fallbacks == ()
    assert got.agent.timeout_s is None
    assert got.agent.writes == ()
    assert got.agent.simulate == Simulate()
    assert (got.agent.max_tokens, got.agent.tempo) == (PLAIN_AGENT.max_tokens, PLAIN_AGENT.tempo)


@pytest.mark.parametrize("mode", MODES, ids=["simulated", "default", "models-endpoints-local", "models"])
def test_the_mode_survives_the_trip(mode: Mode) -> None:
    decoded = roundtrip(full_request(), mode).mode
    assert decoded == mode
    assert decoded.key == mode.key
    assert Mode.from_data(json.loads(json.dumps(mode.to_data()))) == mode


def test_modes_that_differ_have_different_keys() -> None:
    keys = {mode.key for mode in MODES}
    assert len(keys) == len(MODES)
    assert Mode("simulated", 1).key != Mode("simulated", 2).key
    assert Mode("simulated", 1, 0.5).key != Mode("simulated", 1, 1.0).key


@pytest.mark.parametrize("seed", [0, 11])
@pytest.mark.parametrize("index", range(4))
def test_a_decoded_request_draws_exactly_what_the_original_draws(seed: int, index: int) -> None:
    original = requests()[index]
    decoded = roundtrip(original, Mode("simulated", seed, 0.0)).request
    provider = SimulatedProvider(seed)
    planned = provider.plan(original)
    assert SimulatedProvider(seed).plan(decoded) == planned  # latency included: a pure draw
    assert planned.latency_s > 0

    async def both() -> tuple[Any, Any]:
        fast = SimulatedProvider(seed, time_scale=1e-4)
        return await fast.call(original), await SimulatedProvider(seed, time_scale=1e-4).call(decoded)

    first, second = asyncio.run(both())
    assert second == first
    assert first.output == planned.output


def test_the_attempt_on_the_wire_is_the_one_drawn() -> None:
    """A redelivered call must not draw as a retry would: the attempt travels as it was."""
    request = CallRequest(PLAIN_AGENT, "gpt-4o-mini", "mid", "same prompt", attempt=0)
    retry = CallRequest(PLAIN_AGENT, "gpt-4o-mini", "mid", "same prompt", attempt=1)
    provider = SimulatedProvider(3)
    assert provider.plan(request) != provider.plan(retry)
    assert provider.plan(roundtrip(retry, Mode()).request) == provider.plan(retry)


def _good_work() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(encode_work("r", full_request(), Mode()))
    return data


def _without(key: str) -> str:
    data = _good_work()
    del data[key]
    return json.dumps(data)


def _with(**changes: Any) -> str:
    data = _good_work()
    data.update(changes)
    return json.dumps(data)


MALFORMED_WORK = {
    "not-json": "not json",
    "empty": "",
    "null": "null",
    "list": "[]",
    "number": "42",
    "string": '"work"',
    "empty-object": "{}",
    "no-run": _without("run"),
    "no-agent": _without("agent"),
    "no-model": _without("model"),
    "no-prompt": _without("prompt"),
    "no-version": _without("version"),
    "agent-not-object": _with(agent="review"),
    "agent-without-max-tokens": _with(agent={"name": "a"}),
    "version-not-number": _with(version="four"),
    "version-null": _with(version=None),
    "attempt-list": _with(attempt=[]),
    "fallback-too-short": _with(fallbacks=[["mid", "gpt-4o-mini"]]),
    "fallbacks-not-list": _with(fallbacks=5),
    "latency-not-numbers": _with(agent={"name": "a", "max_tokens": 1, "simulate": {"latency_ms": "ab"}}),
}
#: Malformed in their types rather than their shape: they raise AttributeError today.
MALFORMED_TYPES = {
    "mode-list": _with(mode=[]),
    "mode-string": _with(mode="simulated"),
    "simulate-number": _with(agent={"name": "a", "max_tokens": 1, "simulate": 5}),
}


@pytest.mark.parametrize(
    "text",
    [
        *(pytest.param(text, id=name) for name, text in MALFORMED_WORK.items()),
        *(pytest.param(text, id=name) for name, text in MALFORMED_TYPES.items()),
    ],
)
def test_a_malformed_work_item_raises_what_the_worker_catches(text: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode_work(text)


def test_the_good_item_the_malformed_ones_derive_from_decodes() -> None:
    assert decode_work(json.dumps(_good_work())).request.agent.name == "review"


def test_the_shared_section_and_the_prompt_cache_figures_survive_the_trip() -> None:
    request = CallRequest(
        PLAIN_AGENT,
        "claude-sonnet-4-5",
        "frontier",
        "List the defects.",
        "frame",
        shared="<inputs.diff>\nd\n</inputs.diff>",
    )
    decoded = decode_work(encode_work("r1", request, Mode("simulated", 0, 0.0))).request
    assert (decoded.system, decoded.shared, decoded.prompt) == (request.system, request.shared, request.prompt)
    assert decoded.user_text == request.user_text
    message = Broadcast(
        "plain", 1, True, CallResult("ok", "claude-sonnet-4-5", cached_tokens=900, cache_write_tokens=40)
    )
    heard = decode_result(encode_result(message)).message
    assert heard is not None and (heard.result.cached_tokens, heard.result.cache_write_tokens) == (900, 40)


def test_the_remote_provider_hands_on_the_prompt_cache_figures() -> None:
    message = Broadcast("plain", 1, True, CallResult("ok", "gpt-4o", cached_tokens=1024, cache_write_tokens=0))
    heard = decode_result(encode_result(message)).message
    assert heard is not None
    result = heard.result  # what the remote provider returns as its call's result
    assert (result.cached_tokens, result.cache_write_tokens) == (1024, 0)
