"""Real model calls through litellm: the only module of hct that imports it.

Each call goes to the routed model with the agent's messages and ``max_tokens``, under a timeout
taken from its tempo (or ``timeout_s``). Rate limits, server errors, timeouts and dropped
connections are retried with exponential backoff and full jitter (tenacity); when a tier keeps
failing, the call falls back to the next tier up, skipping tiers whose credentials are missing.
Every retry, fallback and skipped fallback is reported to the engine, which makes it an event.
Usage and cost come from litellm's own response.

**Tool calling.** A request with ``tools`` offers them to the model (``tools=``, ``tool_choice``
auto); the answer's ``tool_calls`` become :class:`~hct_cli.call_result.ToolCall` values with the
model's own call ids, their arguments decoded from JSON (arguments that are not a JSON object
keep their text as ``raw`` and decode to nothing, so the engine can tell the model). The turns of
earlier rounds are sent as OpenAI messages: an assistant message with ``tool_calls`` and no
content, then one ``tool`` message per call.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.models import model_info
from hct_cli.program.routing import Route
from hct_cli.providers.base import BACKOFF_S, MAX_BACKOFF_S, RETRIES, CallRequest, ProviderError, timeout_for

__all__ = [
    "Endpoint",
    "LiteLLMProvider",
    "answers",
    "cache_tokens",
    "credentials_problem",
    "load_litellm",
    "message_tokens",
    "messages_for",
    "openai_turn",
    "timeout_for",
    "token_counter",
    "tool_calls_of",
]

_OLLAMA_DEFAULT_BASE = "http://localhost:11434"


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server a model is reached at (a local llama.cpp server, say)."""

    api_base: str
    api_key: str | None = "sk-local"  # local servers ignore it; None: litellm's own (environment)


@cache
def load_litellm() -> ModuleType:
    """Import litellm once, offline and quiet (its price map from the package, no banner)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    # A call cancelled at the wrong instant (Ctrl-C, SIGTERM, a squash) leaves one of litellm's
    # inner coroutines unawaited; the warning says nothing the user can act on.
    warnings.filterwarnings("ignore", message=r"coroutine '.*acompletion' was never awaited", category=RuntimeWarning)
    return litellm


def token_counter(model: str) -> Callable[[str], int]:
    """Counts ``model``'s tokens as litellm does (offline: its bundled tokenizers)."""
    litellm = load_litellm()

    def count(text: str) -> int:
        return int(litellm.token_counter(model=model, text=text))

    return count


def message_tokens(model: str, request: CallRequest) -> int:
    """The prompt tokens of ``request``'s messages, turns and tool definitions included, as litellm
    counts them offline (its bundled tokenizers): what a tool round's prompt weighs."""
    litellm = load_litellm()
    tools = [dict(tool) for tool in request.tools] or None
    return int(litellm.token_counter(model=model, messages=messages_for(request, model), tools=tools))


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers at ``url`` (any status below 500)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(200 <= response.status < 500)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def credentials_problem(model: str, endpoint: Endpoint | None = None) -> str | None:
    """What stops ``model`` from being called, as advice; None when it can be called."""
    if endpoint is not None:
        if answers(endpoint.api_base.rstrip("/") + "/models"):
            return None
        return f"no server answers at {endpoint.api_base}"
    if model.startswith(("ollama/", "ollama_chat/")):
        base = os.environ.get("OLLAMA_API_BASE", _OLLAMA_DEFAULT_BASE)
        if answers(base.rstrip("/") + "/api/tags"):
            return None
        return f"no Ollama server answers at {base} (start one, or set OLLAMA_API_BASE)"
    litellm = load_litellm()
    try:
        litellm.get_llm_provider(model)
        found = litellm.validate_environment(model=model)
    except Exception:  # litellm raises for a model it cannot place with any provider
        return "litellm does not know which provider serves it (write it as PROVIDER/MODEL, e.g. openai/NAME)"
    if found.get("keys_in_environment"):
        return None
    missing = [str(key) for key in found.get("missing_keys") or []]
    return f"set {' and '.join(missing)}" if missing else "its credentials are missing"


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: rate limits, server errors, timeouts, dropped connections."""
    litellm = load_litellm()
    if isinstance(exc, (litellm.RateLimitError, litellm.Timeout, litellm.APIConnectionError)):
        return True
    if isinstance(exc, (litellm.InternalServerError, litellm.ServiceUnavailableError)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


def _reason(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else name
    return f"{name} ({status}): {text}" if status else f"{name}: {text}"


class _Exhausted(Exception):
    """A tier's retries ran out on transient errors: the call may fall back."""

    def __init__(self, model: str, cause: BaseException) -> None:
        super().__init__(f"{model}: {_reason(cause)}")
        self.cause = cause


#: Test seam: extra ``acompletion`` arguments for (model, attempt), e.g. litellm's ``mock_response``.
MockHook = Callable[[str, int], Mapping[str, Any]]


class LiteLLMProvider:
    """Calls real models; one instance serves every station of a run."""

    def __init__(
        self,
        *,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        endpoints: Mapping[str, Endpoint] | None = None,
        mock: MockHook | None = None,
    ) -> None:
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.endpoints = dict(endpoints or {})
        self.mock = mock
        self._problems: dict[str, str | None] = {}
        self.calls = 0

    @staticmethod
    def tokenizer(model: str) -> Callable[[str], int]:
        """How the engine counts ``model``'s tokens for these calls (the simulated provider has none:
        its calls count about four characters a token)."""
        return token_counter(model)

    def problem(self, model: str) -> str | None:
        """Why ``model`` cannot be called (cached per run); None when it can."""
        if model not in self._problems:
            if self.mock is not None and model not in self.endpoints:
                self._problems[model] = None  # mocked calls need no keys
            else:
                self._problems[model] = credentials_problem(model, self.endpoints.get(model))
        return self._problems[model]

    async def call(self, request: CallRequest) -> CallResult:
        candidates = [Route(request.tier, request.model, "routed"), *request.fallbacks]
        failure: _Exhausted | None = None
        for index, route in enumerate(candidates):
            if index > 0:
                assert failure is not None
                problem = self.problem(route.model)
                if problem is not None:
                    request.note("fallback_skipped", tier=route.tier, model=route.model, reason=problem)
                    continue
                request.note("fallback", tier=route.tier, model=route.model, reason=str(failure))
            try:
                return await self._call_with_retries(request, route)
            except _Exhausted as exhausted:
                failure = exhausted
        assert failure is not None
        raise ProviderError(f"{failure} (retries and fallbacks exhausted)") from failure.cause

    async def _call_with_retries(self, request: CallRequest, route: Route) -> CallResult:
        from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
        from tenacity.wait import wait_random_exponential

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            request.note(
                "retry",
                model=route.model,
                attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                reason=_reason(outcome.exception() if outcome is not None else None),
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_random_exponential(multiplier=self.backoff_s, max=self.max_backoff_s),
            retry=retry_if_exception(_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._complete(request, route, attempt.retry_state.attempt_number - 1)
        except ProviderError:
            raise
        except Exception as exc:
            if _transient(exc):
                raise _Exhausted(route.model, exc) from exc
            raise ProviderError(f"{route.model}: {_reason(exc)}") from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _complete(self, request: CallRequest, route: Route, attempt: int) -> CallResult:
        litellm = load_litellm()
        arguments: dict[str, Any] = {
            "model": route.model,
            "messages": messages_for(request, route.model),
            "max_tokens": request.agent.max_tokens,
            # Temperature 0: the same messages give the same answer, so a cached answer is the answer.
            "temperature": 0.0,
            "drop_params": True,  # models that take no temperature get the call without it
            "timeout": timeout_for(request),
            "num_retries": 0,  # every attempt is ours, so each one surfaces as an event
            "max_retries": 0,
        }
        if request.tools:
            arguments["tools"] = [dict(tool) for tool in request.tools]
            arguments["tool_choice"] = "auto"
        if request.agent.output is not None and not request.tools:  # a typed result (hct checks every answer)
            arguments["response_format"] = response_format(litellm, route.model, request.agent.output.schema)
            arguments["messages"] = _asking_for_json(arguments["messages"], request.agent.output.schema)
        endpoint = self.endpoints.get(route.model)
        if endpoint is not None:
            arguments["api_base"] = endpoint.api_base
            if endpoint.api_key is not None:
                arguments["api_key"] = endpoint.api_key
        if self.mock is not None:
            arguments.update(self.mock(route.model, attempt))
        started = time.perf_counter()
        self.calls += 1
        response = await litellm.acompletion(**arguments)
        latency = time.perf_counter() - started
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        cached_tokens, cache_write_tokens = cache_tokens(usage)
        message = response.choices[0].message
        return CallResult(
            output=message.content or "",
            model=route.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=_cost(litellm, response),
            latency_s=latency,
            tier=route.tier,
            cached_tokens=cached_tokens,
            cache_write_tokens=cache_write_tokens,
            tool_calls=tool_calls_of(message),
        )


def response_format(litellm: Any, model: str, schema: Any) -> dict[str, Any]:
    """How ``model`` is asked for JSON valid against ``schema``: the schema itself where litellm
    says the model takes one (``json_schema``), else JSON mode; the answer is validated either way."""
    try:
        takes_schema = bool(litellm.supports_response_schema(model=model))
    except Exception:  # a model litellm does not know: JSON mode, the instruction and the check
        takes_schema = False
    if takes_schema and isinstance(schema, Mapping):
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": dict(schema)}}
    return {"type": "json_object"}


def _asking_for_json(messages: list[dict[str, Any]], schema: Any) -> list[dict[str, Any]]:
    """The messages with the schema spelled out in the last one (for models without schema mode)."""
    import json

    asked = [dict(message) for message in messages]
    note = "\n\nAnswer with JSON only, valid against this JSON Schema:\n" + json.dumps(schema, sort_keys=True)
    last = asked[-1]
    if isinstance(last.get("content"), str):
        last["content"] += note
    else:
        asked.append({"role": "user", "content": note.strip()})
    return asked


def tool_calls_of(message: Any) -> tuple[ToolCall, ...]:
    """The tool calls of a response's message (litellm's or OpenAI's shape, objects or dicts)."""
    found = getattr(message, "tool_calls", None) if not isinstance(message, Mapping) else message.get("tool_calls")
    calls: list[ToolCall] = []
    for index, call in enumerate(found or ()):
        function = _field(call, "function")
        name = str(_field(function, "name") or "")
        text = _field(function, "arguments")
        call_id = str(_field(call, "id") or f"call_{index}")
        if isinstance(text, Mapping):  # some providers hand over the object already decoded
            calls.append(ToolCall(call_id, name, dict(text)))
            continue
        text = "" if text is None else str(text)
        try:
            decoded = json.loads(text) if text.strip() else {}
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            calls.append(ToolCall(call_id, name, decoded))
        else:
            calls.append(ToolCall(call_id, name, {}, raw=text))
    return tuple(calls)


def _field(value: Any, name: str) -> Any:
    if value is None:
        return None
    return value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)


def messages_for(request: CallRequest, model: str) -> list[dict[str, Any]]:
    """The call's messages. On a model whose provider caches only what is marked (Anthropic), the
    shared section is a content block of its own ending in a ``cache_control`` breakpoint, so the
    frame and the shared material are cached; elsewhere caching is automatic on the same prefix."""
    info = model_info(model)
    if not request.shared or info is None or not info.explicit_cache:
        plain = request.messages
        if request.turns:
            cut = len(plain) - len(request.turns)
            plain[cut:] = [openai_turn(turn) for turn in request.turns]
        return plain
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}] if request.system else []
    # The blank line is the one user_text puts between the two: the model reads the same text.
    shared = {"type": "text", "text": f"{request.shared}\n\n", "cache_control": {"type": "ephemeral"}}
    messages.append({"role": "user", "content": [shared, {"type": "text", "text": request.prompt}]})
    messages.extend(openai_turn(turn) for turn in request.turns)
    return messages


def openai_turn(turn: Mapping[str, Any]) -> dict[str, Any]:
    """One message of an earlier round as OpenAI takes it: an assistant's tool calls with no
    content and string arguments, typed ``function``; a tool's answer as text under its call id."""
    message = dict(turn)
    if message.get("role") == "assistant" and message.get("tool_calls"):
        message.setdefault("content", None)
        calls = []
        for call in message["tool_calls"]:
            call = dict(call)
            function = dict(call.get("function") or {})
            if not isinstance(function.get("arguments"), str):
                function["arguments"] = json.dumps(dict(function.get("arguments") or {}), default=str)
            call["function"] = function
            call.setdefault("type", "function")
            calls.append(call)
        message["tool_calls"] = calls
    elif message.get("role") == "tool" and not isinstance(message.get("content"), str):
        message["content"] = json.dumps(message.get("content"), default=str)
    return message


def cache_tokens(usage: Any) -> tuple[int, int]:
    """(prompt tokens read from the provider's cache, prompt tokens written to it) of a response."""
    if usage is None:
        return 0, 0
    details = getattr(usage, "prompt_tokens_details", None)
    read = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    read = read or int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    return read, written


def _cost(litellm: ModuleType, response: Any) -> float:
    """litellm's cost of ``response``; 0 for models its price map does not know (local servers)."""
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # unknown model: nothing to price
            cost = 0.0
    return float(cost or 0.0)
