"""The litellm provider: real calls, retried on transient errors, falling back a tier up when one
keeps failing, every retry and fallback reported as an event.

Every call here goes through litellm itself with ``mock_response`` (or ``mock_timeout``), so
nothing leaves the machine; the only sockets opened are to unused ports on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from hct_cli.call_result import CallResult
from hct_cli.engine import Hands
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.events import Event
from hct_cli.models import model_info
from hct_cli.program.compile import compile_score
from hct_cli.program.lint import load_score
from hct_cli.program.routing import DEFAULT_TIERS, Route, fallbacks_of
from hct_cli.providers.base import CallRequest, ProviderError
from hct_cli.providers.litellm_provider import (
    Endpoint,
    LiteLLMProvider,
    credentials_problem,
    load_litellm,
    timeout_for,
)
from hct_cli.score.model import Agent
from hct_cli.score.tempo import TEMPI, Tempo

pytestmark = [
    pytest.mark.timeout(60),
    # litellm's Ollama types make pydantic warn, on first use, that ReadOnly TypedDict items are
    # not protected; under filterwarnings=error that warning would become the call's failure.
    pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier:UserWarning"),
]

LOCAL = DEFAULT_TIERS["local"].model  # ollama/llama3.1
MID = DEFAULT_TIERS["mid"].model  # gpt-4o-mini
FRONTIER = DEFAULT_TIERS["frontier"].model  # claude-sonnet-4-5

RATE_LIMIT = "litellm.RateLimitError"
SERVER_ERROR = "litellm.InternalServerError"
#: litellm sleeps for the call's timeout, then raises; the answer is there so that a call made
#: without a timeout returns it instead of going to the network.
TIMEOUT: Mapping[str, Any] = {"mock_timeout": True, "mock_response": "answered without a timeout"}

#: Backoff small enough to keep the file fast; with the ``jitter`` fixture the windows are
#: 0.004, 0.008 and then the 0.01 cap.
BACKOFF_S = 0.004
MAX_BACKOFF_S = 0.01
NOBODY_LISTENS = "http://127.0.0.1:9"  # the discard port: connections are refused at once
#: Where a call would go if a mock were ever missing: nowhere but loopback.
LOOPBACK_BASES = {
    name: NOBODY_LISTENS
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL", "ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL", "OLLAMA_API_BASE")
}

Step = str | Mapping[str, Any] | Callable[[ModuleType], BaseException]


# -- helpers -------------------------------------------------------------------------------------


class Script:
    """A mock hook: what litellm answers for each (model, attempt); the last step repeats.

    A step is a ``mock_response`` string, a mapping of extra ``acompletion`` arguments, or a
    function of the litellm module that builds the exception litellm should raise.
    """

    def __init__(self, steps: Mapping[str, Sequence[Step]]) -> None:
        self.steps = steps
        self.calls: list[tuple[str, int]] = []

    def __call__(self, model: str, attempt: int) -> Mapping[str, Any]:
        self.calls.append((model, attempt))
        plan = self.steps[model]
        step = plan[min(attempt, len(plan) - 1)]
        if isinstance(step, str):
            return {"mock_response": step}
        if callable(step):
            return {"mock_response": step(load_litellm())}
        return step


@dataclass
class Notes:
    """The reporter of a request: everything the provider told the engine, in order."""

    seen: list[tuple[str, int, str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, agent: str, version: int, kind: str, data: dict[str, Any]) -> None:
        self.seen.append((agent, version, kind, data))

    @property
    def kinds(self) -> list[str]:
        return [kind for _, _, kind, _ in self.seen]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for _, _, k, data in self.seen if k == kind]


class Wire:
    """Stands in for ``litellm.acompletion``: records each call's arguments, then lets the real
    function answer (with ``extra`` arguments laid over, for providers built without a hook)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.sent: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.raises: list[BaseException] = []  # raised, in order, before litellm is asked at all

    async def __call__(self, **arguments: Any) -> Any:
        self.sent.append(dict(arguments))
        if arguments.get("mock_timeout") and arguments.get("timeout") is None:
            # litellm would sleep its 600 s default before raising: fail the call at once instead.
            raise AssertionError("mock_timeout sent without a timeout")
        if self.raises:
            raise self.raises.pop(0)
        return await self.real(**{**arguments, **self.extra})

    @property
    def models(self) -> list[str]:
        return [arguments["model"] for arguments in self.sent]


class StatusError(Exception):
    """An error from outside litellm's hierarchy that carries only an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"upstream said {status_code}")
        self.status_code = status_code


class Keyless(LiteLLMProvider):
    """A mocked provider that nonetheless reports some models' credentials as missing."""

    def __init__(self, missing: Mapping[str, str], **options: Any) -> None:
        super().__init__(**options)
        self.missing = dict(missing)

    def problem(self, model: str) -> str | None:
        return self.missing.get(model)


def agent(name: str = "writer", **fields: Any) -> Agent:
    return Agent(name=name, index=0, prompt="p", **fields)


def request(
    who: Agent | None = None,
    *,
    model: str = MID,
    tier: str | None = "mid",
    fallbacks: tuple[Route, ...] = (),
    notes: Notes | None = None,
    prompt: str = "Name one cache eviction policy.",
    system: str = "",
) -> CallRequest:
    return CallRequest(
        agent=who or agent(),
        model=model,
        tier=tier,
        prompt=prompt,
        system=system,
        fallbacks=fallbacks,
        reporter=notes,
    )


def provider(script: Script | None, *, retries: int = 3) -> LiteLLMProvider:
    return LiteLLMProvider(retries=retries, backoff_s=BACKOFF_S, max_backoff_s=MAX_BACKOFF_S, mock=script)


def call(provider: LiteLLMProvider, req: CallRequest) -> CallResult:
    return asyncio.run(provider.call(req))


def priced(model: str, prompt_tokens: int = 10, completion_tokens: int = 20) -> float:
    """What litellm's price map says the mock's usage (10 prompt, 20 completion tokens) costs."""
    info = model_info(model)
    assert info is not None and info.output_cost_per_token > 0
    return info.cost(prompt_tokens, completion_tokens)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call here is mocked; should one not be, it goes to a refused loopback port."""
    for name, value in LOOPBACK_BASES.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Wire:
    litellm = load_litellm()
    stand_in = Wire(litellm.acompletion)
    monkeypatch.setattr(litellm, "acompletion", stand_in)
    return stand_in


@pytest.fixture
def jitter(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, float]]:
    """Make tenacity's full-jitter draw the middle of its window, and record every window."""
    import tenacity.wait

    windows: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        windows.append((low, high))
        return low + (high - low) / 2

    monkeypatch.setattr(tenacity.wait, "random", SimpleNamespace(uniform=uniform))
    return windows


# -- a successful call ---------------------------------------------------------------------------


def test_a_call_returns_litellms_text_usage_and_cost(wire: Wire) -> None:
    """Output, usage and cost come from litellm's own response, not from estimates."""
    script = Script({MID: ["An LRU cache evicts the least recently used entry."]})
    notes = Notes()
    result = call(provider(script), request(notes=notes))

    assert result.output == "An LRU cache evicts the least recently used entry."
    assert result.model == MID
    assert result.tier == "mid"
    assert (result.prompt_tokens, result.completion_tokens) == (10, 20)
    assert result.cost_usd == pytest.approx(priced(MID))
    assert result.latency_s >= 0
    assert notes.seen == []
    assert script.calls == [(MID, 0)]


def test_the_call_carries_messages_max_tokens_and_the_tempos_timeout(wire: Wire) -> None:
    """litellm gets the system frame and prompt, the agent's max_tokens, a timeout from its
    tempo, and no retries of its own (each attempt must be ours, to surface as an event)."""
    who = agent(tempo="presto", max_tokens=321)
    ours = provider(Script({MID: ["ok"]}))
    call(ours, request(who, system="Reference frame: be brief.", prompt="Name one policy."))

    [sent] = wire.sent
    assert sent["model"] == MID
    assert sent["messages"] == [
        {"role": "system", "content": "Reference frame: be brief."},
        {"role": "user", "content": "Name one policy."},
    ]
    assert sent["max_tokens"] == 321
    assert sent["timeout"] == TEMPI["presto"].timeout_s == 30.0
    assert sent["num_retries"] == 0
    assert sent["max_retries"] == 0
    assert sent["mock_response"] == "ok"
    assert ours.calls == 1


def test_timeout_s_overrides_the_tempo(wire: Wire) -> None:
    call(provider(Script({MID: ["ok"]})), request(agent(tempo="largo", timeout_s=7.5)))
    assert wire.sent[0]["timeout"] == 7.5


def test_every_tempo_has_its_own_timeout() -> None:
    """Urgent work gives up sooner: the timeouts rise from presto to largo."""
    tempos: tuple[Tempo, ...] = ("presto", "allegro", "moderato", "andante", "largo")
    timeouts = [timeout_for(request(agent(tempo=tempo))) for tempo in tempos]
    assert timeouts == [30.0, 60.0, 120.0, 180.0, 300.0]
    assert timeout_for(request(agent(tempo="presto", timeout_s=2))) == 2.0


def test_an_endpoint_sends_its_base_and_key(wire: Wire) -> None:
    """A model served by an OpenAI-compatible server is called there (the mock answers first)."""
    endpoint = Endpoint(f"{NOBODY_LISTENS}/v1")
    ours = LiteLLMProvider(endpoints={MID: endpoint}, mock=Script({MID: ["ok"]}))
    assert call(ours, request()).output == "ok"
    assert (wire.sent[0]["api_base"], wire.sent[0]["api_key"]) == (endpoint.api_base, "sk-local")
    # A mock needs no keys, but an endpoint must still answer before it counts as callable.
    assert ours.problem(FRONTIER) is None
    assert ours.problem(MID) == f"no server answers at {endpoint.api_base}"


# -- retries -------------------------------------------------------------------------------------


def test_rate_limits_are_retried_with_exponential_full_jitter_backoff(jitter: list[tuple[float, float]]) -> None:
    """Two 429s then an answer: two retry notes, attempts 1 and 2, each waiting a random time
    in a window that starts at zero and doubles (full jitter)."""
    script = Script({MID: [RATE_LIMIT, RATE_LIMIT, "third time lucky"]})
    notes = Notes()
    result = call(provider(script, retries=3), request(notes=notes))

    assert result.output == "third time lucky"
    assert (result.model, result.tier) == (MID, "mid")
    assert script.calls == [(MID, 0), (MID, 1), (MID, 2)]
    assert notes.kinds == ["retry", "retry"]
    retries = notes.of("retry")
    assert [n["attempt"] for n in retries] == [1, 2]
    assert {n["model"] for n in retries} == {MID}
    assert all(n["reason"].startswith("RateLimitError (429)") for n in retries), retries
    assert jitter == [(0, BACKOFF_S), (0, 2 * BACKOFF_S)]  # the window doubles and always starts at zero
    assert [n["wait_s"] for n in retries] == [pytest.approx(BACKOFF_S / 2), pytest.approx(BACKOFF_S)]
    assert all(0 < n["wait_s"] <= MAX_BACKOFF_S for n in retries)
    # Notes name the agent and version of the call they are about.
    assert {(who, version) for who, version, _, _ in notes.seen} == {("writer", 1)}


def test_real_jitter_keeps_waits_within_the_cap() -> None:
    """Without the fixed draw, every wait still lies between zero and max_backoff_s."""
    notes = Notes()
    result = call(provider(Script({MID: [RATE_LIMIT] * 4 + ["ok"]}), retries=4), request(notes=notes))
    assert result.output == "ok"
    waits = [n["wait_s"] for n in notes.of("retry")]
    assert len(waits) == 4
    assert all(0 <= wait <= MAX_BACKOFF_S for wait in waits), waits


def _service_unavailable(litellm: ModuleType) -> BaseException:
    return litellm.ServiceUnavailableError(message="overloaded", llm_provider="openai", model=MID)  # type: ignore[no-any-return]


def _connection_dropped(litellm: ModuleType) -> BaseException:
    return litellm.APIConnectionError(message="connection reset by peer", llm_provider="openai", model=MID)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        pytest.param(SERVER_ERROR, "InternalServerError (500)", id="500"),
        pytest.param(_service_unavailable, "ServiceUnavailableError (503)", id="503"),
        pytest.param(_connection_dropped, "APIConnectionError", id="connection"),
        pytest.param(TIMEOUT, "Timeout (408)", id="timeout"),
    ],
)
def test_server_errors_timeouts_and_dropped_connections_are_retried(
    failure: Step, reason: str, jitter: list[tuple[float, float]], wire: Wire
) -> None:
    """Three transient failures then an answer, with retries=3: the last retry's window is
    capped at max_backoff_s."""
    script = Script({MID: [failure, failure, failure, "recovered"]})
    notes = Notes()
    who = agent(timeout_s=0.01)  # litellm's mock timeout sleeps for the call's timeout first
    result = call(provider(script, retries=3), request(who, notes=notes))

    assert result.output == "recovered"
    assert script.calls == [(MID, 0), (MID, 1), (MID, 2), (MID, 3)]
    retries = notes.of("retry")
    assert notes.kinds == ["retry"] * 3
    assert [n["attempt"] for n in retries] == [1, 2, 3]
    assert all(n["reason"].startswith(reason) for n in retries), retries
    assert jitter == [(0, BACKOFF_S), (0, 2 * BACKOFF_S), (0, MAX_BACKOFF_S)]  # doubling, then capped
    assert [n["wait_s"] for n in retries] == [
        pytest.approx(BACKOFF_S / 2),
        pytest.approx(BACKOFF_S),
        pytest.approx(MAX_BACKOFF_S / 2),
    ]
    assert {sent["timeout"] for sent in wire.sent} == {0.01}


@pytest.mark.parametrize("status", [429, 500, 502, 503, 529])
def test_any_error_with_a_429_or_5xx_status_is_transient(status: int, wire: Wire) -> None:
    """An error from outside litellm's hierarchy is judged by its status code alone."""
    wire.raises.append(StatusError(status))
    notes = Notes()
    result = call(provider(Script({MID: ["ok"]})), request(notes=notes))
    assert result.output == "ok"
    assert len(wire.sent) == 2
    [retry] = notes.of("retry")
    assert retry["reason"] == f"StatusError ({status}): upstream said {status}"


# -- non-transient errors ------------------------------------------------------------------------


def _authentication(litellm: ModuleType) -> BaseException:
    return litellm.AuthenticationError(message="invalid api key", llm_provider="openai", model=MID)  # type: ignore[no-any-return]


def _bad_request(litellm: ModuleType) -> BaseException:
    return litellm.BadRequestError(message="messages must not be empty", llm_provider="openai", model=MID)  # type: ignore[no-any-return]


def _not_found(litellm: ModuleType) -> BaseException:
    return litellm.NotFoundError(message="no such model", llm_provider="openai", model=MID)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("failure", "name", "status"),
    [
        pytest.param("litellm.ContextWindowExceededError", "ContextWindowExceededError", 400, id="context-window"),
        pytest.param(_authentication, "AuthenticationError", 401, id="authentication"),
        pytest.param(_bad_request, "BadRequestError", 400, id="bad-request"),
        pytest.param(_not_found, "NotFoundError", 404, id="not-found"),
    ],
)
def test_non_transient_errors_fail_at_once_without_retry_or_fallback(failure: Step, name: str, status: int) -> None:
    """Asking again cannot help: one attempt, no notes, and a ProviderError naming the model,
    the error and its status, even though a fallback tier was available."""
    script = Script({MID: [failure, "never reached"], FRONTIER: ["never reached"]})
    notes = Notes()
    req = request(notes=notes, fallbacks=fallbacks_of(DEFAULT_TIERS, "mid"))
    with pytest.raises(ProviderError) as raised:
        call(provider(script, retries=3), req)

    assert script.calls == [(MID, 0)]
    assert notes.seen == []
    message = raised.value.message
    assert message.startswith(f"{MID}: {name} ({status}): ")
    assert "\n" not in message
    assert type(raised.value.__cause__).__name__ == name


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_an_error_with_a_4xx_status_is_not_retried(status: int, wire: Wire) -> None:
    wire.raises.append(StatusError(status))
    with pytest.raises(ProviderError, match=rf"^{MID}: StatusError \({status}\)"):
        call(provider(Script({MID: ["ok"]})), request())
    assert len(wire.sent) == 1


# -- fallbacks -----------------------------------------------------------------------------------


def test_a_tier_that_keeps_failing_falls_back_to_the_next_tier_up() -> None:
    """mid fails past its retries; frontier answers, and the result says so."""
    script = Script({MID: [SERVER_ERROR], FRONTIER: ["the frontier answers"]})
    notes = Notes()
    req = request(notes=notes, fallbacks=fallbacks_of(DEFAULT_TIERS, "mid"))
    result = call(provider(script, retries=2), req)

    assert result.output == "the frontier answers"
    assert (result.model, result.tier) == (FRONTIER, "frontier")
    assert result.cost_usd == pytest.approx(priced(FRONTIER))
    assert script.calls == [(MID, 0), (MID, 1), (MID, 2), (FRONTIER, 0)]  # attempts restart per tier
    assert notes.kinds == ["retry", "retry", "fallback"]
    [fallback] = notes.of("fallback")
    assert (fallback["tier"], fallback["model"]) == ("frontier", FRONTIER)
    assert MID in fallback["reason"]
    assert "InternalServerError (500)" in fallback["reason"]


def test_fallbacks_walk_up_the_tiers_in_order() -> None:
    """local fails, then mid fails, then frontier answers: one fallback note per step up."""
    script = Script({LOCAL: [SERVER_ERROR], MID: [RATE_LIMIT], FRONTIER: ["at last"]})
    notes = Notes()
    req = request(model=LOCAL, tier="local", notes=notes, fallbacks=fallbacks_of(DEFAULT_TIERS, "local"))
    result = call(provider(script, retries=1), req)

    assert (result.output, result.model, result.tier) == ("at last", FRONTIER, "frontier")
    assert script.calls == [(LOCAL, 0), (LOCAL, 1), (MID, 0), (MID, 1), (FRONTIER, 0)]
    assert notes.kinds == ["retry", "fallback", "retry", "fallback"]
    first, second = notes.of("fallback")
    assert (first["tier"], first["model"]) == ("mid", MID)
    assert LOCAL in first["reason"] and "InternalServerError" in first["reason"]
    assert (second["tier"], second["model"]) == ("frontier", FRONTIER)
    assert MID in second["reason"] and "RateLimitError" in second["reason"]


def test_an_explicit_fallback_route_is_honoured() -> None:
    """Fallbacks are routes, not tier names: a pinned alternative model works the same way."""
    script = Script({MID: [RATE_LIMIT], "gpt-4o": ["bigger sibling"]})
    notes = Notes()
    req = request(notes=notes, fallbacks=(Route("big", "gpt-4o", "fallback from mid"),))
    result = call(provider(script, retries=0), req)
    assert (result.output, result.model, result.tier) == ("bigger sibling", "gpt-4o", "big")
    assert notes.kinds == ["fallback"]  # retries=0: one attempt per tier, no retry notes


def test_a_fallback_without_credentials_is_skipped_for_the_next_one() -> None:
    """local fails; mid has no key, so it is skipped (and never called); frontier answers."""
    script = Script({LOCAL: [SERVER_ERROR], MID: ["must not be called"], FRONTIER: ["frontier"]})
    ours = Keyless(
        {MID: "set OPENAI_API_KEY"}, retries=0, backoff_s=BACKOFF_S, max_backoff_s=MAX_BACKOFF_S, mock=script
    )
    notes = Notes()
    req = request(model=LOCAL, tier="local", notes=notes, fallbacks=fallbacks_of(DEFAULT_TIERS, "local"))
    result = call(ours, req)

    assert (result.model, result.tier) == (FRONTIER, "frontier")
    assert script.calls == [(LOCAL, 0), (FRONTIER, 0)]
    assert notes.kinds == ["fallback_skipped", "fallback"]
    [skipped] = notes.of("fallback_skipped")
    assert skipped == {"tier": "mid", "model": MID, "reason": "set OPENAI_API_KEY"}


def test_when_every_fallback_lacks_credentials_the_call_fails(wire: Wire) -> None:
    """No mock hook, so credentials are checked for real (keys are unset in tests): the frontier
    fallback is skipped for its missing key and the call fails with the routed tier's error."""
    wire.extra = {"mock_response": SERVER_ERROR}
    ours = LiteLLMProvider(retries=1, backoff_s=BACKOFF_S, max_backoff_s=MAX_BACKOFF_S)
    notes = Notes()
    req = request(notes=notes, fallbacks=fallbacks_of(DEFAULT_TIERS, "mid"))
    with pytest.raises(ProviderError) as raised:
        call(ours, req)

    assert wire.models == [MID, MID]  # the frontier was never called
    assert notes.kinds == ["retry", "fallback_skipped"]
    [skipped] = notes.of("fallback_skipped")
    assert (skipped["tier"], skipped["model"]) == ("frontier", FRONTIER)
    assert "ANTHROPIC_API_KEY" in skipped["reason"]
    message = raised.value.message
    assert message.startswith(f"{MID}: InternalServerError (500)")
    assert message.endswith("(retries and fallbacks exhausted)")
    assert type(raised.value.__cause__).__name__ == "InternalServerError"


def test_the_last_fallbacks_failure_is_the_one_reported() -> None:
    script = Script({MID: [SERVER_ERROR], FRONTIER: [RATE_LIMIT]})
    with pytest.raises(ProviderError, match=rf"^{FRONTIER}: RateLimitError \(429\).*retries and fallbacks exhausted"):
        call(provider(script, retries=0), request(fallbacks=fallbacks_of(DEFAULT_TIERS, "mid")))
    assert script.calls == [(MID, 0), (FRONTIER, 0)]


# -- through the engine --------------------------------------------------------------------------

FLAKY_SCORE = """\
hct: 1
name: flaky
agents:
  draft:
    prompt: Write one sentence about caches.
    tempo: allegro
    dynamics: mf
  review:
    prompt: "Review: {{ cues.draft }}"
    cues: [draft]
    tempo: allegro
    dynamics: ff
"""


def perform(tmp_path: Path, ours: LiteLLMProvider) -> tuple[RunResult, list[Event]]:
    path = tmp_path / "flaky.yaml"
    path.write_text(FLAKY_SCORE, "utf-8")
    program = compile_score(load_score(path))
    assert {name: spec.route.model for name, spec in program.stations.items()} == {"draft": MID, "review": FRONTIER}
    events: list[Event] = []
    result = asyncio.run(Performer(program, Hands(lambda spec: ours), observers=[events.append]).run())
    return result, events


def position(events: list[Event], kind: str, station: str) -> int:
    return next(i for i, e in enumerate(events) if e.kind == kind and e.station == station)


def test_a_retry_surfaces_as_an_event_of_its_station(tmp_path: Path, wire: Wire) -> None:
    """draft (mid) is rate-limited once; the engine turns the provider's note into a ``retry``
    event of draft@1 between its issue and its cue, and the run completes."""
    script = Script({MID: [RATE_LIMIT, "Caches trade memory for time."], FRONTIER: ["Accurate."]})
    result, events = perform(tmp_path, provider(script))

    assert result.status == "completed"
    retries = [e for e in events if e.kind == "retry"]
    assert [(e.station, e.version) for e in retries] == [("draft", 1)]
    assert retries[0].data["attempt"] == 1
    assert retries[0].data["model"] == MID
    assert "RateLimitError (429)" in retries[0].data["reason"]
    assert position(events, "issue", "draft") < position(events, "retry", "draft") < position(events, "cue", "draft")
    agents = result.agents
    assert agents["draft"].output == "Caches trade memory for time."
    assert agents["review"].output == "Accurate."
    assert (agents["draft"].prompt_tokens, agents["draft"].completion_tokens) == (10, 20)
    assert result.cost_usd == pytest.approx(priced(MID) + priced(FRONTIER))
    # The reviewer's prompt was rendered from the draft the retry produced.
    [review_call] = [sent for sent in wire.sent if sent["model"] == FRONTIER]
    assert review_call["messages"][-1] == {"role": "user", "content": "Review: Caches trade memory for time."}


def test_a_fallback_surfaces_as_an_event_and_the_record_names_the_model_that_answered(tmp_path: Path) -> None:
    script = Script({MID: [SERVER_ERROR], FRONTIER: ["from the frontier"]})
    result, events = perform(tmp_path, provider(script, retries=1))

    assert result.status == "completed"
    fallbacks = [e for e in events if e.kind == "fallback"]
    assert [(e.station, e.version) for e in fallbacks] == [("draft", 1)]
    assert (fallbacks[0].data["tier"], fallbacks[0].data["model"]) == ("frontier", FRONTIER)
    assert [e.station for e in events if e.kind == "retry"] == ["draft"]
    draft = result.agents["draft"]
    assert draft.output == "from the frontier"
    assert draft.model == FRONTIER
    assert draft.cost_usd == pytest.approx(priced(FRONTIER))


def test_after_a_fallback_the_record_names_the_tier_that_answered(tmp_path: Path) -> None:
    script = Script({MID: [SERVER_ERROR], FRONTIER: ["from the frontier"]})
    result, _ = perform(tmp_path, provider(script, retries=0))
    assert result.agents["draft"].model == FRONTIER
    assert result.agents["draft"].to_json()["tier"] == "frontier"


def test_a_station_whose_call_fails_fails_the_run(tmp_path: Path) -> None:
    """A non-transient error fails the station with the provider's message; its dependent is skipped."""
    script = Script({MID: [_authentication], FRONTIER: ["never"]})
    result, events = perform(tmp_path, provider(script))
    assert result.status == "failed"
    draft = result.agents["draft"]
    assert draft.status == "failed"
    assert draft.error is not None and draft.error.startswith(f"{MID}: AuthenticationError (401)")
    assert result.agents["review"].status == "skipped"
    assert not any(e.kind in ("retry", "fallback") for e in events)
    assert script.calls == [(MID, 0)]


# -- credentials ---------------------------------------------------------------------------------


def test_missing_keys_are_named() -> None:
    """The autouse fixture unsets OPENAI_API_KEY and ANTHROPIC_API_KEY."""
    assert credentials_problem(FRONTIER) == "set ANTHROPIC_API_KEY"
    assert credentials_problem(MID) == "set OPENAI_API_KEY"


def test_a_key_in_the_environment_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert credentials_problem(MID) is None
    assert credentials_problem(FRONTIER) == "set ANTHROPIC_API_KEY"


def test_an_ollama_model_needs_a_server_that_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_API_BASE", NOBODY_LISTENS)
    problem = credentials_problem(LOCAL)
    assert problem is not None
    assert f"no Ollama server answers at {NOBODY_LISTENS}" in problem
    assert "OLLAMA_API_BASE" in problem


def test_an_endpoint_needs_a_server_that_answers() -> None:
    assert credentials_problem(MID, Endpoint(f"{NOBODY_LISTENS}/v1")) == f"no server answers at {NOBODY_LISTENS}/v1"


def test_a_mocked_provider_needs_no_keys() -> None:
    ours = provider(Script({}))
    assert ours.problem(MID) is None
    assert ours.problem(FRONTIER) is None


def test_an_unmocked_provider_reports_missing_keys_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    ours = LiteLLMProvider()
    assert ours.problem(FRONTIER) == "set ANTHROPIC_API_KEY"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-a-real-key")
    assert ours.problem(FRONTIER) == "set ANTHROPIC_API_KEY"  # cached for the run
    assert LiteLLMProvider().problem(FRONTIER) is None


@pytest.mark.parametrize("model", ["not-a-model", "gpt-9-imaginary", "claude-typo"])
def test_a_model_litellm_cannot_place_is_a_problem(model: str) -> None:
    """litellm.validate_environment reports an unplaceable name as having every key it needs
    (no provider, so no missing keys); the check must not pass it for that."""
    problem = credentials_problem(model)
    assert problem is not None
    assert "provider" in problem


# -- the CLI -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


class Background:
    """CLI runs started together, early, in the background; ``ran(name)`` waits for one."""

    def __init__(self, commands: Mapping[str, list[str]], *, cwd: Path, env: Mapping[str, str], logs: Path) -> None:
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        for name, command in commands.items():
            with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
                self.processes[name] = subprocess.Popen(
                    command, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err
                )

    def ran(self, name: str) -> Ran:
        code = self.processes[name].wait(timeout=45)

        def read(suffix: str) -> str:
            return (self.logs / f"{name}.{suffix}").read_text("utf-8")

        return Ran(code, read("out"), read("err"))

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def _hct() -> list[str]:
    """The installed ``hct`` script (hct_cli has no ``__main__``)."""
    main = Path(sys.executable).with_name("hct")
    assert main.is_file(), f"the hct script is not installed next to {sys.executable}"
    return [str(main)]


@pytest.fixture(scope="module", autouse=True)
def keyless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """``hct perform scores/code-review.yaml`` without keys, plain and with --json.

    Each run pays litellm's import (seconds), so both start with the module's first test and
    run while the others do. Their environment is built here, not inherited from the
    function-scoped autouse fixture: no keys, a fresh HCT_HOME, the bundled price map, and
    every provider's address (Ollama's included) on a loopback port where nothing answers.
    """
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env |= {
        "HCT_HOME": str(tmp_path_factory.mktemp("hct-home")),
        "NO_COLOR": "1",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **LOOPBACK_BASES,
    }
    commands = {
        "plain": [*_hct(), "perform", "scores/code-review.yaml"],
        "json": [*_hct(), "perform", "scores/code-review.yaml", "--json"],
    }
    runs = Background(commands, cwd=repo, env=env, logs=tmp_path_factory.mktemp("cli"))
    try:
        yield runs
    finally:
        runs.stop()


def test_perform_without_keys_refuses_to_start(keyless: Background) -> None:
    """Before any call: exit 1, and stderr names an agent, its model, the missing key, and the
    two ways to run without keys."""
    ran = keyless.ran("plain")
    assert ran.code == 1, ran.stderr
    assert "Traceback" not in ran.stderr
    assert "error: cannot call every routed model" in ran.stderr
    assert "agent 'style' (and 4 more agents) routes to gpt-4o-mini: set OPENAI_API_KEY" in ran.stderr
    assert "routes to claude-sonnet-4-5: set ANTHROPIC_API_KEY" in ran.stderr
    assert (
        f"agent 'parse' (and 3 more agents) routes to ollama/llama3.1: no Ollama server answers at {NOBODY_LISTENS}"
        in ran.stderr
    )
    hint = next(line for line in ran.stderr.splitlines() if line.startswith("hint: "))
    assert "--simulate" in hint and "--local" in hint
    assert ran.stdout == ""  # nothing ran, so no summary


def test_perform_without_keys_as_json_is_one_error_object(keyless: Background) -> None:
    ran = keyless.ran("json")
    assert ran.code == 1, ran.stderr
    data = json.loads(ran.stdout)
    assert list(data) == ["error"]
    error = data["error"]
    assert error["type"] == "CredentialsError"
    assert "OPENAI_API_KEY" in error["message"] and "ANTHROPIC_API_KEY" in error["message"]
    assert "agent 'style'" in error["message"]
    assert "--simulate" in error["hint"] and "--local" in error["hint"]
