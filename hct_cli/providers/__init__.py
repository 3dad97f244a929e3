"""Providers execute one station's call: a model, Python code, a shell command or a person."""

from __future__ import annotations

from hct_cli.providers.base import CallRequest, Provider, ProviderError

__all__ = ["CallRequest", "Provider", "ProviderError"]
