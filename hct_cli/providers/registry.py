"""Providers by name: the run assembly, ``hct bench`` and ``hct worker`` ask for one here.

Each name maps to ``"module:Class"``, imported only when that provider is first asked for, so
importing the registry costs nothing (litellm loads only with the ``litellm`` or ``local``
provider). The assembly chooses a name from the run's configuration and never branches on
provider classes; a new provider is one line here and one case in the contract tests
(``tests/providers/test_contract.py``), which every entry must pass.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hct_cli.errors import UnknownProviderError
from hct_cli.providers.base import Provider

__all__ = ["PROVIDERS", "make_provider", "provider_class"]

#: Every provider hct has, by name.
PROVIDERS: Mapping[str, str] = MappingProxyType(
    {
        "simulated": "hct_cli.providers.simulated:SimulatedProvider",
        "litellm": "hct_cli.providers.litellm_provider:LiteLLMProvider",
        "local": "hct_cli.providers.local:LocalProvider",
        "cached": "hct_cli.store.cached:CachingProvider",  # beside the L5 cache it reads and writes
        "exec": "hct_cli.providers.exec:ExecProvider",
        "human": "hct_cli.providers.human:HumanProvider",
    }
)


def provider_class(name: str) -> type[Any]:
    """The class registered under ``name``, imported now."""
    target = PROVIDERS.get(name)
    if target is None:
        raise UnknownProviderError(
            f"no provider is named {name!r}",
            hint=f"Use one of: {', '.join(PROVIDERS)}.",
        )
    module, _, attribute = target.partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), attribute)
    return cls


def make_provider(name: str, /, *args: Any, **options: Any) -> Provider:
    """A new provider of the class named ``name``, built with ``options`` (its own keywords)."""
    provider: Provider = provider_class(name)(*args, **options)
    return provider
