"""Model prices and context windows, read from the price map bundled inside litellm.

Importing litellm costs seconds; reading its bundled JSON costs milliseconds. Everything on the
lint, help and ``--simulate`` paths asks this module, never litellm itself.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ModelInfo", "known_model", "model_info", "prefill_of", "price_map", "time_to_first_token_s"]

#: Time to first token of a provider: seconds before prefill, and prompt tokens prefilled a second.
#: Typical figures, used to decide whether waiting for a prompt cache pays, and by the simulator.
_PREFILL: dict[str, tuple[float, float]] = {"anthropic": (0.45, 8_000.0), "openai": (0.30, 10_000.0)}
_OTHER_PREFILL = (0.15, 4_000.0)


def prefill_of(provider: str) -> tuple[float, float]:
    """(seconds to the first token before prefill, tokens prefilled per second) of a provider."""
    return _PREFILL.get(provider, _OTHER_PREFILL)


def time_to_first_token_s(info: ModelInfo, prompt_tokens: int) -> float:
    """The expected time to the first token of an uncached prompt of ``prompt_tokens``."""
    base, rate = prefill_of(info.provider)
    return base + prompt_tokens / rate


_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class ModelInfo:
    """What the price map says of one model (USD per token)."""

    name: str
    input_cost_per_token: float
    output_cost_per_token: float
    max_input_tokens: int | None
    max_output_tokens: int | None
    provider: str = ""
    cache_read_cost_per_token: float | None = None  # a prompt-cache hit; None: no prompt caching
    cache_write_cost_per_token: float | None = None  # writing the cache; None: no surcharge (automatic)

    @property
    def caches_prompts(self) -> bool:
        return self.cache_read_cost_per_token is not None

    @property
    def explicit_cache(self) -> bool:
        """The prefix to cache must be marked (Anthropic's ``cache_control``); else caching is automatic."""
        return self.cache_write_cost_per_token is not None

    @property
    def min_cacheable_tokens(self) -> int:
        """The shortest prefix the provider caches (1,024 tokens; Anthropic's Haiku models: 2,048)."""
        return 2048 if self.explicit_cache and "haiku" in self.name else 1024

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
    ) -> float:
        """The price of a call; ``prompt_tokens`` includes the cached and cache-writing ones."""
        plain = prompt_tokens - cached_tokens - cache_write_tokens
        cost = plain * self.input_cost_per_token + completion_tokens * self.output_cost_per_token
        if cached_tokens:
            cost += cached_tokens * (self.cache_read_cost_per_token or self.input_cost_per_token)
        if cache_write_tokens:
            cost += cache_write_tokens * (self.cache_write_cost_per_token or self.input_cost_per_token)
        return cost


@cache
def price_map() -> dict[str, Any]:
    """litellm's bundled price map, or an empty map when litellm is not installed."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _MAP_FILE
        if candidate.is_file():
            data: dict[str, Any] = json.loads(candidate.read_text("utf-8"))
            data.pop("sample_spec", None)
            return data
    return {}


def _lookup(name: str) -> tuple[str, dict[str, Any]] | None:
    prices = price_map()
    if name in prices:
        return name, prices[name]
    provider, _, bare = name.partition("/")
    if bare and bare in prices and prices[bare].get("litellm_provider", "").startswith(provider):
        return bare, prices[bare]
    return None


def known_model(name: str) -> bool:
    return _lookup(name) is not None


@cache
def model_info(name: str) -> ModelInfo | None:
    """Prices and windows of ``name``; None when the price map does not know it."""
    found = _lookup(name)
    if found is None:
        return None
    key, entry = found
    return ModelInfo(
        name=key,
        input_cost_per_token=float(entry.get("input_cost_per_token") or 0.0),
        output_cost_per_token=float(entry.get("output_cost_per_token") or 0.0),
        max_input_tokens=entry.get("max_input_tokens") or entry.get("max_tokens"),
        max_output_tokens=entry.get("max_output_tokens"),
        provider=str(entry.get("litellm_provider") or ""),
        cache_read_cost_per_token=entry.get("cache_read_input_token_cost"),
        cache_write_cost_per_token=entry.get("cache_creation_input_token_cost"),
    )
