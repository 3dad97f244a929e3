"""What a run is given: the configuration the journal keeps, and the options it does not.

:class:`RunConfig` is everything ``--resume`` restores besides the score; it is journaled with
the run. :class:`Trust`, :class:`Resume` and :class:`Tuning` say what this one process may do,
which run it continues and how ``hct bench`` holds the engine still: they are never journaled,
so a resume is given them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hct_cli.jsonio import dumps
from hct_cli.redact import Redactor

if TYPE_CHECKING:
    from hct_cli.score import Score

__all__ = ["Resume", "RunConfig", "Trust", "Tuning"]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``--resume`` restores besides the score itself."""

    inputs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    simulate: bool = True
    time_scale: float = 1.0
    local: str | None = None
    dispatch: str = "reactive"
    budget_usd: float | None = None
    cache: bool = True
    durable: str = "normal"
    bus: str | None = None  # a Redis URL in distributed mode; None: in process
    # Inputs journaled redacted -> a keyed hash of the real value (hct_cli.redact.seal).
    sealed: Mapping[str, str] = field(default_factory=dict)

    def budget(self, score: Score) -> float | None:
        """The spend cap in force: ``--budget``, else the score's ``routing.budget_usd``."""
        return self.budget_usd if self.budget_usd is not None else score.routing.budget_usd

    def to_json(self, redact: Redactor | None = None) -> str:
        """The configuration as JSON; with ``redact``, secrets replaced in its values first, and
        each input that held one sealed, so that a resume can tell its real value again. A
        password in the bus URL is masked: a resume takes it from the environment."""
        data = asdict(self)
        if self.bus is not None:
            from hct_cli.bus.redis import shown_url

            data["bus"] = shown_url(self.bus)
        if redact is None or not redact:
            return dumps(data)
        from hct_cli.redact import seal

        data = redact.data(data)
        sealed = dict(self.sealed)
        for name, value in self.inputs.items():
            if data["inputs"].get(name) != value:
                sealed[name] = seal(value)
        data["sealed"] = sealed
        return dumps(data)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


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
