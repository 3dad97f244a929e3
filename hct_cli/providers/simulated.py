"""The simulated provider: reproducible calls without keys, servers or network.

Every draw (latency, token counts, text, gate outcome) is a pure function of the seed, the agent,
the model, a hash of the rendered messages and the attempt index, never of wall time, the run id
or completion order. Latency is slept for real, so scheduling overhead stays real; cost is priced
from litellm's bundled price map for the model the router chose.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
from functools import lru_cache
from typing import Any

from hct_cli.compile import expected_latency_s
from hct_cli.models import ModelInfo, model_info
from hct_cli.providers.base import CallRequest, CallResult

__all__ = ["SimulatedProvider", "draw"]

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


def draw(seed: int, *parts: object) -> tuple[float, float, float, float]:
    """Four independent uniforms in [0, 1) from a stable hash of ``seed`` and ``parts``."""
    key = "\x1f".join([str(seed), *[p if isinstance(p, str) else str(p) for p in parts]])
    a, b, c, d = _UNPACK(hashlib.blake2b(key.encode(), digest_size=32).digest())
    return a / _SCALE, b / _SCALE, c / _SCALE, d / _SCALE


@lru_cache(maxsize=4096)
def _words(start: int, count: int) -> str:
    return " ".join(_WORDS[(start + 7 * i) % len(_WORDS)] for i in range(count))


class SimulatedProvider:
    """Answers every call from deterministic draws; sleeps the drawn latency."""

    def __init__(self, seed: int = 0, *, time_scale: float = 1.0) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self._static: dict[tuple[object, ...], tuple[float, float, ModelInfo | None]] = {}

    def _figures(self, request: CallRequest) -> tuple[float, float, ModelInfo | None]:
        """What does not depend on the draw: latency range and prices (cached per agent and model)."""
        key = (request.agent.name, request.model, request.tier, request.agent.simulate.latency_ms)
        found = self._static.get(key)
        if found is None:
            low, high = expected_latency_s(request.agent, request.tier)
            found = self._static[key] = (low, high - low, model_info(request.model))
        return found

    def plan(self, request: CallRequest) -> CallResult:
        """The call's outcome, without sleeping (pure)."""
        agent = request.agent
        figures = agent.simulate
        # One hash over everything a draw may depend on, the rendered messages included.
        u_latency, u_tokens, u_text, _ = draw(
            self.seed, agent.name, request.model, request.attempt, f"{request.system}\x1e{request.prompt}"
        )
        low, spread, price = self._figures(request)
        latency = low + spread * u_latency
        prompt_tokens = figures.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = max(1, (len(request.system) + len(request.prompt)) // 4)
        output_tokens = figures.output_tokens
        if output_tokens is None:
            output_tokens = min(agent.max_tokens, 40 + int(u_tokens * 360))
        output_tokens = min(output_tokens, agent.max_tokens)
        cost = price.cost(prompt_tokens, output_tokens) if price is not None else 0.0
        return CallResult(
            output=self._output(request, u_text, output_tokens),
            model=request.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=output_tokens,
            cost_usd=cost,
            latency_s=latency,
        )

    @staticmethod
    def _output(request: CallRequest, u_text: float, output_tokens: int) -> Any:
        agent = request.agent
        if agent.simulate.output is not None:
            return agent.simulate.output
        start = int(u_text * len(_WORDS))
        count = max(8, min(48, output_tokens // 4))
        words = _words(start, count)
        text = f"[{agent.name} via {request.model}, simulated] {words}."
        if len(agent.writes) > 1:
            return json.dumps({key: f"{key}: {words}" for key in agent.writes})
        return text

    async def call(self, request: CallRequest) -> CallResult:
        result = self.plan(request)
        if result.latency_s > 0:
            await asyncio.sleep(result.latency_s * self.time_scale)
        return result
