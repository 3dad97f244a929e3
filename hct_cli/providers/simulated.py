"""The simulated provider: reproducible calls without keys, servers or network.

Every draw (latency, token counts, text, gate outcome) is a pure function of the seed, the agent,
the model, a hash of the rendered messages and the attempt index, never of wall time, the run id
or completion order. Latency is slept for real, so scheduling overhead stays real; cost is priced
from litellm's bundled price map for the model the router chose.

**Prompt caches.** A call whose stable prefix (reference frame and shared section) is at least the
model's minimum cacheable length, on a model the price map prices cache reads for, meets a
prompt cache like the provider's own. Reading that prefix costs prefill time (:func:`hct_cli.models.prefill_of`: a fixed
time to first token plus tokens per second) on top of the drawn latency. A call that finds the
prefix written by an earlier call's first token reads it ten times faster, at the cache-read
price. Any other call writes it, at the cache-write price where the provider charges one
(Anthropic) and at the plain price where caching is automatic (OpenAI). Whether a call hits
depends on when it starts, as with a real provider; the listening policy is what makes that
ordered. A request with ``on_first_token`` has it called once the prompt is read.

**The scripted model.** An agent's ``simulate.tool_calls`` is a script of tool rounds: while a
request's ``step`` is below its length, the call answers that round's calls (``ToolCall`` ids
``call_{step}_{i}``, the script's tool and arguments) with an empty output; at step N (a script of
N rounds) it gives the final answer as any call does. The earlier rounds' messages (``turns``) are
part of the rendered messages: they lengthen the prompt and enter the hash the draws are keyed
on, so every round draws anew and deterministically. A tool round's completion tokens follow
the size of its calls' JSON. Without a script no call asks for a tool and every draw is as it
was before tools existed (the key gains the turns only when there are some).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any, NamedTuple

from hct_cli.call_result import CallResult, ToolCall
from hct_cli.models import ModelInfo, model_info, prefill_of
from hct_cli.program.compile import expected_latency_s
from hct_cli.program.routing import Route
from hct_cli.providers.base import BACKOFF_S, MAX_BACKOFF_S, RETRIES, CallRequest, ProviderError, timeout_for
from hct_cli.score.template import check_template, compile_template, render_compiled

__all__ = ["SimulatedProvider", "draw", "prefill_of"]

_WORDS = [
    "tempo",
    "cue",
    "fermata",
    "signal",
    "score",
    "voice",
    "phrase",
    "measure",
    "cadence",
    "motif",
    "theme",
    "section",
    "finding",
    "risk",
    "change",
    "review",
    "summary",
    "outline",
    "draft",
    "detail",
    "result",
    "check",
    "value",
    "note",
]
_SCALE = float(1 << 64)
_UNPACK = struct.Struct("<4Q").unpack


def _key(seed: int, *parts: object) -> str:
    return "\x1f".join([str(seed), *[p if isinstance(p, str) else str(p) for p in parts]])


def draw(seed: int, *parts: object) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) from a stable hash of ``seed`` and ``parts``."""
    a, b, c, d = _UNPACK(hashlib.blake2b(_key(seed, *parts).encode(), digest_size=32).digest())
    return a / _SCALE, b / _SCALE, c / _SCALE, d / _SCALE


class _Figures(NamedTuple):
    low: float
    spread: float
    price: ModelInfo | None


@lru_cache(maxsize=4096)
def _words(start: int, count: int) -> str:
    return " ".join(_WORDS[(start + 7 * i) % len(_WORDS)] for i in range(count))


def _rendered(turns: tuple[Any, ...]) -> str:
    """The earlier rounds' messages as the model reads them: canonical JSON, stable across runs."""
    return json.dumps([dict(turn) for turn in turns], sort_keys=True, separators=(",", ":"), default=str)


def _scripted_arguments(args: Mapping[str, Any], request: CallRequest) -> dict[str, Any]:
    """A scripted call's arguments, a text argument's templates (``{{ inputs.repo }}``) rendered
    from the request's context as a prompt is: the script's own text, never a model's."""
    rendered: dict[str, Any] = {}
    for name, value in args.items():
        if isinstance(value, str) and "{{" in value:
            if check_template(value)[1]:
                raise ProviderError(
                    f"agent {request.agent.name!r} scripts an argument {name!r} that is not a valid template",
                    hint="Use only {{ inputs.NAME }} and {{ cues.NAME }} in simulate.tool_calls.",
                )
            value = render_compiled(compile_template(value), request.context)
        rendered[name] = value
    return rendered


#: How often a simulated judge passes an agent that gives no ``simulate.pass_rate``.
DEFAULT_PASS_RATE = 0.85


def _judgement(pass_rate: float | None, threshold: float, u: float) -> str:
    """A judge's answer that passes (scores at or above ``threshold``) with probability ``pass_rate``."""
    rate = DEFAULT_PASS_RATE if pass_rate is None else pass_rate
    if u < rate:
        score = threshold + (1.0 - threshold) * (1.0 - u / rate)
        reason = "meets the criteria (simulated)"
    else:
        score = threshold * (u - rate) / (1.0 - rate)
        reason = "falls short of the criteria (simulated)"
        score = max(0.0, min(score, threshold - 1e-6))  # below the threshold (unless it is 0: all pass)
    return json.dumps({"score": score, "reason": reason})


_CACHED_SPEEDUP = 10.0  # a cached prefix is read this much faster than it is prefilled
_CACHE_TTL_S = 300.0  # Anthropic's ephemeral cache lives five minutes


class SimulatedProvider:
    """Answers every call from deterministic draws; sleeps the drawn latency."""

    first_token_notes = True  # calls ``request.on_first_token`` once the prompt is read

    def __init__(
        self,
        seed: int = 0,
        *,
        time_scale: float = 1.0,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
    ) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._static: dict[tuple[object, ...], _Figures] = {}
        self._caches: dict[str, float] = {}  # prefix -> when its cache was written (loop time)

    def _figures(self, request: CallRequest) -> _Figures:
        """What does not depend on the draw: the latency range and the prices."""
        agent = request.agent
        key = (request.model, request.tier, agent.simulate.latency_ms)
        found = self._static.get(key)
        if found is None:
            low, high = expected_latency_s(agent, request.tier)
            found = self._static[key] = _Figures(low, high - low, model_info(request.model))
        return found

    def plan(self, request: CallRequest, retry: int = 0) -> CallResult:
        """The call's outcome, without sleeping (pure); ``retry`` counts the provider's own retries
        of a call that timed out, each of which draws anew."""
        agent = request.agent
        figures = agent.simulate
        fixed = self._figures(request)
        # One hash over everything a draw may depend on, the rendered messages included: the
        # same value as draw(seed, agent, model, attempt, messages), spelled out for speed.
        user = request.user_text if request.shared else request.prompt
        key = f"{self.seed}\x1f{agent.name}\x1f{request.model}\x1f{request.attempt}\x1f{request.system}\x1e{user}"
        turns = _rendered(request.turns) if request.turns else ""
        if turns:
            key = f"{key}\x1e{turns}"
        if retry:
            key = f"{key}\x1f{retry}"
        a, b, c, _ = _UNPACK(hashlib.blake2b(key.encode(), digest_size=32).digest())
        u_latency, u_tokens, u_text = a / _SCALE, b / _SCALE, c / _SCALE
        latency = fixed.low + fixed.spread * u_latency
        prompt_tokens = figures.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = max(1, (len(request.system) + len(user) + len(turns)) // 4)
        elif turns:
            prompt_tokens += len(turns) // 4  # the earlier rounds are read again
        if figures.tool_calls and request.step < len(figures.tool_calls):
            return self._tool_round(request, fixed, prompt_tokens, fixed.low + fixed.spread * u_latency)
        if agent.output is not None and request.purpose != "judge":  # a typed result: a valid instance
            return self._typed(request, fixed, prompt_tokens, latency, u_text)
        output_tokens = figures.output_tokens
        if request.purpose == "judge":
            output_tokens = 30  # a score and one sentence
        elif output_tokens is None:
            output_tokens = 40 + int(u_tokens * 360)
        output_tokens = min(output_tokens, agent.max_tokens)
        price = fixed.price
        cost = price.cost(prompt_tokens, output_tokens) if price is not None else 0.0
        return CallResult(
            self._output(request, u_text, output_tokens), request.model, prompt_tokens, output_tokens, cost, latency
        )

    @staticmethod
    def _typed(request: CallRequest, fixed: _Figures, prompt_tokens: int, latency: float, u_text: float) -> CallResult:
        """A typed answer: ``simulate.output`` when pinned, else the schema's smallest valid
        instance (its words picked by the draw); its tokens are its JSON's."""
        from hct_cli.program.instance import InstanceError, smallest_instance

        agent = request.agent
        assert agent.output is not None
        value = agent.simulate.output
        if value is None:
            try:
                value = smallest_instance(agent.output.schema, int(u_text * 2**32))
            except InstanceError as exc:
                raise ProviderError(f"agent {agent.name!r}: {exc}") from exc
        figures = agent.simulate
        size = len(json.dumps(value, ensure_ascii=False, default=str))
        output_tokens = min(figures.output_tokens or max(1, size // 4), agent.max_tokens)
        price = fixed.price
        cost = price.cost(prompt_tokens, output_tokens) if price is not None else 0.0
        return CallResult(value, request.model, prompt_tokens, output_tokens, cost, latency)

    @staticmethod
    def _tool_round(request: CallRequest, fixed: _Figures, prompt_tokens: int, latency: float) -> CallResult:
        """A scripted round: the calls of ``simulate.tool_calls[step]``, no text."""
        step = request.step
        calls = tuple(
            ToolCall(id=f"call_{step}_{i}", name=scripted.tool, arguments=_scripted_arguments(scripted.args, request))
            for i, scripted in enumerate(request.agent.simulate.tool_calls[step])
        )
        size = len(json.dumps([call.to_data() for call in calls], sort_keys=True, default=str))
        output_tokens = min(max(1, size // 4), request.agent.max_tokens)
        price = fixed.price
        cost = price.cost(prompt_tokens, output_tokens) if price is not None else 0.0
        return CallResult("", request.model, prompt_tokens, output_tokens, cost, latency, tool_calls=calls)

    @staticmethod
    def _output(request: CallRequest, u_text: float, output_tokens: int) -> Any:
        agent = request.agent
        if request.purpose == "judge":
            return _judgement(agent.simulate.pass_rate, float(request.context.get("threshold", 0.7)), u_text)
        if agent.simulate.output is not None:
            return agent.simulate.output
        start = int(u_text * len(_WORDS))
        count = max(8, min(48, output_tokens // 4))
        words = _words(start, count)
        text = f"[{agent.name} via {request.model}, simulated] {words}."
        if len(agent.writes) > 1:
            return json.dumps({key: f"{key}: {words}" for key in agent.writes})
        return text

    def _prompt_cache(self, request: CallRequest, result: CallResult) -> float:
        """Meet the provider's prompt cache: set the result's cached or cache-writing tokens and
        cost; the seconds from the call's start to its first token (0: the cache plays no part)."""
        price = model_info(request.model)
        tokens = request.prefix_tokens
        if price is None or not price.caches_prompts or tokens < price.min_cacheable_tokens:
            return 0.0
        tokens = min(tokens, result.prompt_tokens)
        base, rate = prefill_of(price.provider)
        key = request.prefix_key
        now = asyncio.get_running_loop().time()
        written = self._caches.get(key)
        if written is not None and written <= now < written + _CACHE_TTL_S:
            result.cached_tokens = tokens
            prefill = tokens / (rate * _CACHED_SPEEDUP)
        else:
            result.cache_write_tokens = tokens if price.explicit_cache else 0
            prefill = tokens / rate
            ready = now + (base + prefill) * self.time_scale
            if written is None or now >= written + _CACHE_TTL_S or ready < written:
                self._caches[key] = ready  # readable once the first writer's first token is out
        result.latency_s += prefill
        result.cost_usd = price.cost(
            result.prompt_tokens, result.completion_tokens, result.cached_tokens, result.cache_write_tokens
        )
        return base + prefill

    def recalled(self, request: CallRequest) -> None:
        """An earlier segment of the run (a resume) met ``request``'s prefix in the cache. A
        provider's cache outlives the conductor's process; this one lives in it, so it is told."""
        now = asyncio.get_running_loop().time()
        written = self._caches.get(request.prefix_key)
        if written is None or written > now or now >= written + _CACHE_TTL_S:
            self._caches[request.prefix_key] = now

    async def call(self, request: CallRequest) -> CallResult:
        result = self.plan(request)
        first = min(self._prompt_cache(request, result), result.latency_s) if request.shared else 0.0
        # The drawn latency and the timeout are both simulated seconds: which calls time out does
        # not depend on --time-scale. A call that cannot time out costs one comparison here.
        if result.latency_s > 0:
            timeout = timeout_for(request)
            if result.latency_s > timeout:
                return await self._after_timeout(request, timeout)
        return await self._answer(request, result, first)

    async def _after_timeout(self, request: CallRequest, timeout: float) -> CallResult:
        """What a real provider does when a call times out: wait out the timeout, retry with
        backoff, then fall back to the next tier up; fail when every tier has run out."""
        waited = 0.0  # simulated seconds spent on timeouts and backoffs
        failure = ""
        routes = [Route(request.tier, request.model, "routed"), *request.fallbacks]
        for index, route in enumerate(routes):
            attempt = request
            if index > 0:
                request.note("fallback", tier=route.tier, model=route.model, reason=failure)
                attempt = replace(request, model=route.model, tier=route.tier)
            for retry in range(self.retries + 1):
                if index > 0 or retry > 0:  # the first attempt is the one that brought us here
                    result = self.plan(attempt, retry)
                    first = min(self._prompt_cache(attempt, result), result.latency_s) if attempt.shared else 0.0
                    if result.latency_s <= timeout:
                        result.tier = route.tier
                        result.latency_s += waited  # the time the station waits for its answer
                        return await self._answer(attempt, result, first + waited)
                failure = f"{route.model}: Timeout: no answer within {timeout:g}s (simulated)"
                waited += timeout
                if retry < self.retries:
                    upper = min(self.max_backoff_s, self.backoff_s * 2**retry)
                    wait = (
                        upper * draw(self.seed, request.agent.name, route.model, request.attempt, "backoff", retry)[0]
                    )
                    request.note("retry", model=route.model, attempt=retry + 1, wait_s=round(wait, 3), reason=failure)
                    waited += wait
        await asyncio.sleep(waited * self.time_scale)
        raise ProviderError(
            f"{failure} (retries and fallbacks exhausted)",
            hint="Give the agent a larger timeout_s, or a simulate.latency_ms within it.",
        )

    async def _answer(self, request: CallRequest, result: CallResult, first: float) -> CallResult:
        """Sleep the call's latency (its first token after ``first``) at the time scale; return it."""
        if self.time_scale != 1.0:
            result.latency_s *= self.time_scale  # report the time the call really took
            first *= self.time_scale
        if request.on_first_token is not None:
            loop = asyncio.get_running_loop()
            end = loop.time() + result.latency_s  # the call's end, however the first sleep ran over
            if first > 0:
                await asyncio.sleep(first)
            request.on_first_token()
            if end > loop.time():
                await asyncio.sleep(end - loop.time())
        elif result.latency_s > 0:
            await asyncio.sleep(result.latency_s)
        return result
