"""The provider interface: execute one call of one station."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hct_cli.bus.base import Broadcast
from hct_cli.call_result import CallResult
from hct_cli.errors import HctError
from hct_cli.program.routing import Route
from hct_cli.score.model import Agent
from hct_cli.score.tempo import TEMPI

__all__ = [
    "BACKOFF_S",
    "MAX_BACKOFF_S",
    "RETRIES",
    "CallRequest",
    "Provider",
    "ProviderError",
    "Reporter",
    "broadcast_of",
    "timeout_for",
]

#: Retries of a call that failed transiently (a timeout, a rate limit), before the next tier: the
#: n-th waits a random time of up to ``BACKOFF_S * 2**(n - 1)`` seconds, at most ``MAX_BACKOFF_S``.
RETRIES = 3
BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class ProviderError(HctError):
    """A call failed; the station fails (or retries, where the score says so)."""


#: Receives what a provider wants known about a call: (agent, version, event kind, data).
Reporter = Callable[[str, int, str, dict[str, Any]], None]


@dataclass(slots=True)  # not frozen: built once per call on the hot path, never mutated
class CallRequest:
    """Everything a provider needs for one call."""

    agent: Agent
    model: str
    tier: str | None
    prompt: str  # the agent's own instructions, rendered
    system: str = ""  # the reference frame, rendered
    version: int = 1
    attempt: int = 0
    context: Mapping[str, Any] = field(default_factory=dict)  # cues, inputs, readable state
    fallbacks: tuple[Route, ...] = ()  # next tiers to try, in order, when this one keeps failing
    reporter: Reporter | None = None
    purpose: str = "call"  # "judge" when the call scores another agent's output for a fermata
    affinity: str | None = None  # in distributed mode, the worker to prefer (an attacca hand-off)
    paged: tuple[Any, ...] = ()  # what L1 paged out of the prompt to fit the window (memory.Cut)
    # Material other calls share (large cues, inputs, state), laid out between the frame and the
    # instructions so that calls fanning out from the same cues share a prefix (listening).
    shared: str = ""
    on_first_token: Callable[[], None] | None = None  # the provider calls it once the prompt is read
    # Tool use (an agent with ``tools:``): the function definitions the model may call, in
    # litellm's (OpenAI's) ``tools=`` form; the model-tool round this call is (0 first); and the
    # messages of earlier rounds (the assistant's tool calls, the tools' answers) after the user's.
    tools: tuple[Mapping[str, Any], ...] = ()
    step: int = 0
    turns: tuple[Mapping[str, Any], ...] = ()

    @property
    def prefix(self) -> str:
        """The stable part of the messages: what a provider's prompt cache can hold."""
        return f"{self.system}\x1e{self.shared}"

    @property
    def prefix_key(self) -> str:
        """The identity of the prefix in a provider's prompt cache (one cache per model)."""
        return hashlib.blake2b(f"{self.model}\x1f{self.prefix}".encode(), digest_size=16).hexdigest()

    @property
    def prefix_tokens(self) -> int:
        """The tokens of the cacheable prefix (about four characters a token); 0 without a shared section."""
        return (len(self.system) + len(self.shared)) // 4 if self.shared else 0

    def note(self, kind: str, **data: Any) -> None:
        """Tell the engine about this call (a retry, a fallback); it becomes an event."""
        if self.reporter is not None:
            self.reporter(self.agent.name, self.version, kind, data)

    @property
    def user_text(self) -> str:
        """The user message: the shared material, then the instructions."""
        return f"{self.shared}\n\n{self.prompt}" if self.shared else self.prompt

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": self.user_text})
        messages.extend(dict(turn) for turn in self.turns)
        return messages


class Provider(Protocol):
    """Executes calls. Implementations: simulated, litellm (real models), exec (python/shell)."""

    async def call(self, request: CallRequest) -> CallResult:
        """Run one call; raise :class:`ProviderError` when it fails."""


def timeout_for(request: CallRequest) -> float:
    """How long one call of the request's agent may take: its ``timeout_s``, else its tempo's."""
    agent = request.agent
    return (
        float(agent.timeout_s) if agent.timeout_s else (TEMPI[agent.tempo].timeout_s if agent.tempo in TEMPI else 120.0)
    )


def broadcast_of(station: str, request: CallRequest, result: CallResult) -> Broadcast:
    """A call's result as it goes on the bus under the request's tag version: the bus owns it from
    now on (the tier that answered is the request's unless a fallback moved the call)."""
    if not result.tier:
        result.tier = request.tier
    return Broadcast(station, request.version, True, result)
