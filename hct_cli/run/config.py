"""What a run is given beside its journaled configuration.

:class:`~hct_cli.store.journal.RunConfig` is everything ``--resume`` restores besides the score;
it is journaled with the run. :class:`Trust`, :class:`Resume` and :class:`Tuning` say what this one process may do,
which run it continues and how ``hct bench`` holds the engine still: they are never journaled,
so a resume is given them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

__all__ = ["Resume", "Trust", "Tuning"]


@dataclass(frozen=True)
class Trust:
    """What a run may do on this machine beyond calling models (``--allow-exec``, ``--allow-path``)."""

    allow_exec: bool = False  # python and shell agents, python checks
    allow_path: bool = False  # input and schema files outside the score's directory


@dataclass(frozen=True)
class Resume:
    """Which journaled run to continue, and what this segment changes of it."""

    run_id: str | None = None  # None: the latest run that can be resumed
    given: Mapping[str, str] = field(default_factory=dict)  # inputs journaled redacted, given again
    bus: str | None = None  # overrides the journaled bus
    durable: str | None = None  # overrides the journaled durability
    resend_writes: bool = False  # a person checked the writes in doubt did not happen: send them again


@dataclass(frozen=True)
class Tuning:
    """How ``hct bench`` runs a score: the engine alone, everything it does not measure held still.

    ``coherence`` and ``listening`` are the policies a comparison varies. ``engine_only``
    simulates every call (python and shell agents too), evaluates the checks a simulated run
    would draw, asks no person and learns nothing across runs.
    """

    coherence: str | None = None  # None: the score's own
    listening: bool = True
    engine_only: bool = False
