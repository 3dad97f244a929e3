"""What a run is given, grouped: how the engine plays it, what it resumes from, and its hands.

A :class:`~hct_cli.engine.perform.Performer` takes these three groups instead of a score of
loose keywords, so that a caller names only the group it changes and every group says what it
is for: :class:`EngineOptions` (how to schedule and account for the run), :class:`ResumeState`
(what earlier segments of the run left in the journal) and :class:`Hands` (what makes the
calls, judges the gates and counts tokens).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hct_cli.program.compile import StationSpec
from hct_cli.providers.base import Provider

if TYPE_CHECKING:
    from hct_cli.engine.context import Tokenizer
    from hct_cli.engine.gates import Gatekeeper
    from hct_cli.redact import Redactor
    from hct_cli.store.cache import Predictors
    from hct_cli.store.runs import RecalledCall, ToolJournal
    from hct_cli.tools.base import ToolBox

__all__ = ["EngineOptions", "Hands", "ProviderFor", "ResumeState"]

#: The provider that makes the calls of a station.
ProviderFor = Callable[[StationSpec], Provider]


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How the engine plays a run: its dispatch policy, budget, coherence and what it reports."""

    dispatch: str = "reactive"
    budget_usd: float | None = None
    coherence: str | None = None  # None: the score's own
    max_replays: int = 3  # replays of a stale read before it fails
    listening: bool = True  # calls that share a prefix wait for its prompt cache as their tempo allows
    digests: bool = False  # issue events carry the request's digest (always on a resume)
    run_id: str | None = None  # None: a fresh one


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What earlier segments of the run left: the journaled calls, the tag versions, the spend."""

    recall: Mapping[tuple[str, int, str], RecalledCall] = field(default_factory=dict)
    start_versions: Mapping[str, int] = field(default_factory=dict)  # squashed versions are not reused
    spent_before_usd: float = 0.0
    tools: ToolJournal | None = None  # the tool calls journaled: answered, or sent without a result


@dataclass(frozen=True, slots=True)
class Hands:
    """What acts for the run: the providers of its calls and judges, its gates, its token counts."""

    provider_for: ProviderFor
    judge_provider: Provider | None = None  # None: the first model station's provider
    tokenizer: Tokenizer | None = None  # None: about four characters a token
    gates: Gatekeeper | None = None  # None: one for the score's tiers and schema references
    predictors: Predictors | None = None  # None: speculation learns in memory only
    redactor: Redactor | None = None  # None: the environment's secrets
    tools: ToolBox | None = None  # the score's tool servers for this run (None: it declares none)
