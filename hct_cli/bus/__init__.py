"""The common data bus: results are broadcast here and only here."""

from __future__ import annotations

from hct_cli.bus.base import Broadcast, Bus, Handler

__all__ = ["Broadcast", "Bus", "Handler"]
