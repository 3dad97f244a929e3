"""Prompt caches through litellm: how a call's messages mark the shared prefix for the provider's
cache, how the cache's tokens are read back from litellm's usage, and how they are priced.

Calls go through litellm itself with ``mock_response`` (an answer, or a whole response whose
usage carries cache figures); ``litellm.acompletion`` is wrapped to record exactly what it was
sent. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hct_cli.bus.base import Broadcast
from hct_cli.call_result import CallResult
from hct_cli.engine import Hands, Performer
from hct_cli.engine.result import AgentRecord
from hct_cli.models import model_info, price_map
from hct_cli.program.compile import compile_score
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.providers.base import CallRequest
from hct_cli.providers.litellm_provider import LiteLLMProvider, cache_tokens, load_litellm, messages_for
from hct_cli.score.model import Agent

pytestmark = [
    pytest.mark.timeout(60),
    # litellm's Ollama types make pydantic warn, on first use, that ReadOnly TypedDict items are
    # not protected; under filterwarnings=error that warning would become the call's failure.
    pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

SONNET = "claude-sonnet-4-5"  # Anthropic: only a prefix marked with cache_control is cached
GPT4O = "gpt-4o"  # OpenAI: caching is automatic on the longest common prefix
LOCAL = "ollama/llama3.1"  # no prompt cache in the price map
SCORE = Path(__file__).resolve().parents[2] / "scores" / "shared-context.yaml"
REVIEWERS = ("security", "performance", "correctness", "concurrency", "api", "tests")

FRAME = "Reference frame\nobjective: Find the defects in this change before it merges."
SHARED = (
    "<inputs.diff>\n" + "\n".join(f"+ line {i}: cache.put(key_{i}, ttl=30)" for i in range(300)) + "\n</inputs.diff>"
)
PROMPT = "List the security defects in this change:\n<inputs.diff> (above)"
EPHEMERAL = {"type": "ephemeral"}

MockHook = Callable[[str, int], Mapping[str, Any]]


class Wire:
    """Stands in for ``litellm.acompletion``: records each call's arguments, then lets litellm answer."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, **arguments: Any) -> Any:
        self.sent.append(dict(arguments))
        return await self.real(**arguments)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call here is mocked; should one not be, it goes to a refused loopback port."""
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL", "OLLAMA_API_BASE"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    litellm = load_litellm()
    stand_in = Wire(litellm.acompletion)
    monkeypatch.setattr(litellm, "acompletion", stand_in)
    return stand_in


def answering(text: str = "No defects found.") -> MockHook:
    return lambda model, attempt: {"mock_response": text}


def with_usage(usage: Mapping[str, Any]) -> MockHook:
    """A mock whose response carries ``usage`` as the provider would send it."""

    def hook(model: str, attempt: int) -> Mapping[str, Any]:
        response = {
            "id": "mock",
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": dict(usage),
        }
        return {"mock_response": response}

    return hook


def request(model: str, *, shared: str = SHARED, system: str = FRAME, prompt: str = PROMPT) -> CallRequest:
    return CallRequest(Agent(name="security", index=0, prompt="p"), model, "frontier", prompt, system, shared=shared)


def call(hook: MockHook, req: CallRequest) -> Any:
    return asyncio.run(LiteLLMProvider(retries=0, mock=hook).call(req))


# -- the message layout litellm receives ----------------------------------------------------------


def test_on_anthropic_the_shared_section_is_a_content_part_ending_in_a_cache_breakpoint(wire: Wire) -> None:
    req = request(SONNET)
    result = call(answering(), req)
    assert result.output == "No defects found."

    [sent] = wire.sent
    assert sent["model"] == SONNET
    system, user = sent["messages"]
    assert system == {"role": "system", "content": FRAME}  # the reference frame
    assert user["role"] == "user"
    shared, instructions = user["content"]
    assert shared == {"type": "text", "text": f"{SHARED}\n\n", "cache_control": EPHEMERAL}
    assert instructions == {"type": "text", "text": PROMPT}  # after the breakpoint, uncached
    # The model reads the same text as from the plain layout.
    assert shared["text"] + instructions["text"] == req.user_text
    assert json.dumps(sent["messages"]).count("cache_control") == 1


@pytest.mark.parametrize("model", [GPT4O, LOCAL])
def test_where_caching_is_automatic_or_absent_the_user_message_is_one_string_shared_part_first(
    model: str, wire: Wire
) -> None:
    req = request(model)
    call(answering(), req)
    [sent] = wire.sent
    assert sent["messages"] == [
        {"role": "system", "content": FRAME},
        {"role": "user", "content": f"{SHARED}\n\n{PROMPT}"},
    ]
    assert sent["messages"][1]["content"].startswith(SHARED)
    assert "cache_control" not in json.dumps(sent["messages"])


@pytest.mark.parametrize("model", [SONNET, GPT4O])
def test_without_a_shared_section_nothing_is_marked(model: str, wire: Wire) -> None:
    call(answering(), request(model, shared=""))
    [sent] = wire.sent
    assert sent["messages"] == [{"role": "system", "content": FRAME}, {"role": "user", "content": PROMPT}]
    assert "cache_control" not in json.dumps(sent["messages"])


def test_without_a_frame_the_marked_user_message_comes_alone() -> None:
    messages = messages_for(request(SONNET, system=""), SONNET)
    assert [m["role"] for m in messages] == ["user"]
    assert messages[0]["content"][0]["cache_control"] == EPHEMERAL


def test_the_six_reviewers_send_litellm_one_marked_prefix_and_the_warm_up_goes_through_it_too(wire: Wire) -> None:
    """The whole score through the engine and litellm: every reviewer's call carries the same
    system message and the same marked shared part, and differs only in its instructions. The
    litellm provider reports no first tokens, so a one-token warm-up writes the cache first."""
    score = load_score(SCORE)
    provider = LiteLLMProvider(retries=0, mock=answering("- none"))
    performer = Performer(compile_score(score), Hands(lambda spec: provider), inputs=resolve_inputs(score, {}))
    result = asyncio.run(performer.run())
    assert result.status == "completed", {n: r.error for n, r in result.agents.items() if r.error}

    to_sonnet = [sent for sent in wire.sent if sent["model"] == SONNET]
    warm_ups = [sent for sent in to_sonnet if sent["max_tokens"] == 1]
    calls = [sent for sent in to_sonnet if sent["max_tokens"] != 1]
    assert len(warm_ups) == 1 and len(calls) == len(REVIEWERS)
    assert wire.sent.index(warm_ups[0]) == 0  # before any reviewer's call
    systems = {json.dumps(sent["messages"][0]) for sent in to_sonnet}
    shared_parts = {json.dumps(sent["messages"][1]["content"][0]) for sent in to_sonnet}
    assert len(systems) == 1 and len(shared_parts) == 1
    [shared_part] = [sent["messages"][1]["content"][0] for sent in warm_ups]
    assert shared_part["cache_control"] == EPHEMERAL
    assert shared_part["text"].startswith("<inputs.diff>\n") and len(shared_part["text"]) > 40_000
    instructions = [sent["messages"][1]["content"][1]["text"] for sent in calls]
    assert len(set(instructions)) == len(REVIEWERS)
    assert all("<inputs.diff> (above)" in text and len(text) < 200 for text in instructions)
    assert performer.listening.to_json() == {"followers": 5, "warm_ups": 1}


# -- the cache's tokens, read from litellm's usage ------------------------------------------------


def _usage(**fields: Any) -> Any:
    return load_litellm().Usage(**fields)


def _details(cached: int) -> Any:
    from litellm.types.utils import PromptTokensDetailsWrapper

    return PromptTokensDetailsWrapper(cached_tokens=cached)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        pytest.param(None, (0, 0), id="no usage"),
        pytest.param(lambda: _usage(prompt_tokens=2000, completion_tokens=5), (0, 0), id="uncached"),
        pytest.param(
            lambda: _usage(prompt_tokens=2000, completion_tokens=5, prompt_tokens_details=_details(1792)),
            (1792, 0),
            id="openai Usage",
        ),
        pytest.param(
            lambda: _usage(prompt_tokens=2000, completion_tokens=5, cache_creation_input_tokens=1800),
            (0, 1800),
            id="anthropic Usage write",
        ),
        pytest.param(
            lambda: _usage(
                prompt_tokens=2000, completion_tokens=5, cache_creation_input_tokens=0, cache_read_input_tokens=1800
            ),
            (1800, 0),
            id="anthropic Usage read",
        ),
        pytest.param(
            lambda: SimpleNamespace(prompt_tokens=2000, prompt_tokens_details=SimpleNamespace(cached_tokens=1024)),
            (1024, 0),
            id="openai namespace",
        ),
        pytest.param(
            lambda: SimpleNamespace(prompt_tokens=2000, prompt_tokens_details=None),
            (0, 0),
            id="details None",
        ),
        pytest.param(
            lambda: SimpleNamespace(cache_read_input_tokens=700, cache_creation_input_tokens=300),
            (700, 300),
            id="anthropic namespace",
        ),
        pytest.param(
            lambda: SimpleNamespace(cache_read_input_tokens=None, cache_creation_input_tokens=None),
            (0, 0),
            id="anthropic namespace None",
        ),
    ],
)
def test_cache_tokens_reads_openai_and_anthropic_usage(usage: Any, expected: tuple[int, int]) -> None:
    assert cache_tokens(usage() if callable(usage) else usage) == expected


@pytest.mark.parametrize(
    ("model", "usage", "cached", "written"),
    [
        (SONNET, {"cache_creation_input_tokens": 1800, "cache_read_input_tokens": 0}, 0, 1800),
        (SONNET, {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 1800}, 1800, 0),
        (GPT4O, {"prompt_tokens_details": {"cached_tokens": 1792}}, 1792, 0),
    ],
)
def test_a_response_with_cache_usage_is_reported_and_priced_with_the_maps_cache_prices(
    model: str, usage: dict[str, Any], cached: int, written: int, wire: Wire
) -> None:
    hook = with_usage({"prompt_tokens": 2000, "completion_tokens": 10, "total_tokens": 2010, **usage})
    result = call(hook, request(model))
    assert (result.prompt_tokens, result.completion_tokens) == (2000, 10)
    assert (result.cached_tokens, result.cache_write_tokens) == (cached, written)
    info = model_info(model)
    assert info is not None
    assert result.cost_usd == pytest.approx(info.cost(2000, 10, cached, written))
    assert result.cost_usd != pytest.approx(info.cost(2000, 10))  # the cache changed the price


# -- prices ---------------------------------------------------------------------------------------


def test_the_price_map_gives_sonnet_its_cache_prices() -> None:
    info = model_info(SONNET)
    assert info is not None
    entry = price_map()[SONNET]
    assert info.input_cost_per_token == entry["input_cost_per_token"] == pytest.approx(3e-6)
    assert info.cache_read_cost_per_token == entry["cache_read_input_token_cost"] == pytest.approx(3e-7)
    assert info.cache_write_cost_per_token == entry["cache_creation_input_token_cost"] == pytest.approx(3.75e-6)
    assert info.caches_prompts and info.explicit_cache and info.min_cacheable_tokens == 1024


def test_which_models_cache_and_how() -> None:
    gpt, local, haiku = model_info(GPT4O), model_info(LOCAL), model_info("claude-haiku-4-5")
    assert gpt is not None and local is not None and haiku is not None
    assert gpt.caches_prompts and not gpt.explicit_cache and gpt.min_cacheable_tokens == 1024
    assert gpt.cache_read_cost_per_token == price_map()[GPT4O]["cache_read_input_token_cost"]
    assert not local.caches_prompts and not local.explicit_cache
    assert haiku.explicit_cache and haiku.min_cacheable_tokens == 2048


def test_cost_prices_plain_cached_and_cache_writing_tokens_apart() -> None:
    info = model_info(SONNET)
    assert info is not None
    # 10,000 prompt tokens: 6,000 read from the cache, 3,000 written to it, 1,000 plain; 500 out.
    expected = 1000 * 3e-6 + 6000 * 3e-7 + 3000 * 3.75e-6 + 500 * 1.5e-5
    assert info.cost(10_000, 500, 6000, 3000) == pytest.approx(expected)
    assert info.cost(10_000, 500) == pytest.approx(10_000 * 3e-6 + 500 * 1.5e-5)
    gpt = model_info(GPT4O)
    assert gpt is not None and gpt.cache_read_cost_per_token is not None
    # Automatic caching: writing costs the plain price.
    assert gpt.cost(2000, 0, 0, 1500) == pytest.approx(gpt.cost(2000, 0))
    assert gpt.cost(2000, 0, 1500) == pytest.approx(500 * 2.5e-6 + 1500 * gpt.cache_read_cost_per_token)


def test_a_records_input_cost_and_saving_count_every_call_warm_ups_included() -> None:
    info = model_info(SONNET)
    assert info is not None
    warm = Broadcast(
        "a",
        1,
        True,
        CallResult(
            "",
            SONNET,
            prompt_tokens=20_000,
            completion_tokens=1,
            cost_usd=0.0,
            latency_s=0.0,
            tier="frontier",
            cached=False,
            worker=None,
            cached_tokens=0,
            cache_write_tokens=19_000,
        ),
    )
    read = Broadcast(
        "a",
        1,
        True,
        CallResult(
            "",
            SONNET,
            prompt_tokens=20_100,
            completion_tokens=300,
            cost_usd=0.0,
            latency_s=0.0,
            tier="frontier",
            cached=False,
            worker=None,
            cached_tokens=19_000,
            cache_write_tokens=0,
        ),
    )
    record = AgentRecord(warm_ups=[warm], result=read)
    assert (record.cached_tokens, record.cache_write_tokens, record.calls) == (19_000, 19_000, 2)
    paid = (1000 * 3e-6 + 19_000 * 3.75e-6) + (1100 * 3e-6 + 19_000 * 3e-7)
    assert record.input_cost_usd == pytest.approx(paid)
    assert record.cache_saving_usd == pytest.approx(40_100 * 3e-6 - paid)
    data = record.to_json()
    assert (data["cached_tokens"], data["cache_write_tokens"]) == (19_000, 19_000)
    assert data["cache_saving_usd"] == pytest.approx(record.cache_saving_usd, abs=1e-8)
