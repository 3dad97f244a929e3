"""The engine: reservation stations fired by a common data bus under a dispatch policy."""

from __future__ import annotations

from hct_cli.engine.options import EngineOptions, Hands, ProviderFor, ResumeState
from hct_cli.engine.perform import Performer, perform
from hct_cli.engine.result import AgentRecord, RunResult

__all__ = [
    "AgentRecord",
    "EngineOptions",
    "Hands",
    "Performer",
    "ProviderFor",
    "ResumeState",
    "RunResult",
    "perform",
]
