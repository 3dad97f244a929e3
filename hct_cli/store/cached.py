"""A provider in front of another one that serves identical calls from the L5 result cache."""

from __future__ import annotations

from hct_cli.call_result import CallResult
from hct_cli.providers.base import CallRequest, Provider
from hct_cli.store.cache import ResultCache, cache_key

__all__ = ["CachingProvider"]


class CachingProvider:
    """Answer from the cache when the same call was answered before; otherwise call and remember.

    ``namespace`` separates answers that differ for the same messages: each simulated seed,
    agent and attempt draws its own answer, while a real model at temperature 0 answers one.

    A round that asked for tools is not cached: the cache keeps an answer's output and tokens,
    not instructions, and a tool round is cheap beside the tools it sets off; its final answer,
    keyed on the tools' results (the turns), is.
    """

    def __init__(self, inner: Provider, cache: ResultCache, *, simulated_seed: int | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.simulated_seed = simulated_seed

    @property
    def first_token_notes(self) -> bool:
        """Whether calls it makes report their first token (listening): as its inner provider."""
        return bool(getattr(self.inner, "first_token_notes", False))

    @property
    def time_scale(self) -> float:
        """How fast its inner provider runs time (a simulated one may run it faster)."""
        return float(getattr(self.inner, "time_scale", 1.0))

    def recalled(self, request: CallRequest) -> None:
        """Tell the provider underneath of a journaled call's prompt cache (see SimulatedProvider)."""
        recalled = getattr(self.inner, "recalled", None)
        if recalled is not None:
            recalled(request)

    def _namespace(self, request: CallRequest) -> str:
        if self.simulated_seed is None:
            return "live"
        # The simulated figures decide the answer as much as the messages do (a fixed output).
        figures = repr(request.agent.simulate)
        return f"simulated\x1e{self.simulated_seed}\x1e{request.agent.name}\x1e{request.attempt}\x1e{figures}"

    async def call(self, request: CallRequest) -> CallResult:
        key = cache_key(self._namespace(request), request)
        hit = self.cache.get(key)
        if hit is not None:
            hit.tier = request.tier
            return hit
        result = await self.inner.call(request)
        if not result.tool_calls:
            self.cache.put(key, result)
        return result
