"""``hct_cli.perform`` and ``hct_cli.aperform``: a run of a score as one library call.

Both take the options ``hct perform`` takes, as keywords, and return the :class:`RunResult` its
``--json`` prints. A run is journaled under ``$HCT_HOME`` as the CLI journals it (resume it
with ``resume=RUN_ID``) unless ``journal=False``, which writes nothing there (and so keeps no
result cache either). Every failure before or outside the run is an :class:`~hct_cli.errors.HctError`;
a failing agent is not one: it is in the result, as it is in the CLI's.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

from hct_cli.engine.dispatch import POLICIES
from hct_cli.engine.result import RunResult
from hct_cli.errors import UsageError
from hct_cli.events import Observer
from hct_cli.program.compile import Program
from hct_cli.program.inputs import resolve_inputs
from hct_cli.program.lint import load_score
from hct_cli.run.assemble import Run, Source, prepare
from hct_cli.run.config import Resume, Trust
from hct_cli.store.journal import RunConfig

__all__ = ["aperform", "perform"]


@dataclass(frozen=True)
class _Call:
    """One call's arguments, checked, before anything is loaded or written."""

    source: Source | None
    config: RunConfig
    resume: Resume | None
    trust: Trust
    journal: bool
    home: Path | None


def _call(
    score: Source | None,
    config: RunConfig,
    *,
    inputs: Mapping[str, str] | None,
    durable: str | None,
    resume: str | None,
    trust: Trust,
    journal: bool,
    home: Path | None,
) -> _Call:
    """The call's arguments checked as ``hct perform`` checks its options; the score loaded and
    its inputs resolved (a resume: the journal has them)."""
    if durable not in (None, "normal", "full"):
        raise UsageError(f"unknown durable value {durable!r}", hint="Use normal (survives a killed process) or full.")
    if config.dispatch not in POLICIES:
        raise UsageError(f"unknown dispatch {config.dispatch!r}", hint=f"Use one of: {', '.join(POLICIES)}.")
    if config.budget_usd is not None and not (math.isfinite(config.budget_usd) and config.budget_usd >= 0):
        raise UsageError("budget_usd must be zero or more", hint="Pass a budget in USD, e.g. budget_usd=0.25.")
    if config.local not in (None, "local", "all"):
        raise UsageError(f"unknown local value {config.local!r}", hint="Use local='local' or local='all'.")
    if config.local is not None and config.simulate:
        raise UsageError("local calls a real model; simulate calls none", hint="Choose one of them.")
    if not math.isfinite(config.time_scale) or config.time_scale <= 0:
        raise UsageError("time_scale must be above zero", hint="e.g. simulate=True, time_scale=0.1.")
    if resume is not None:
        if score is not None:
            raise UsageError("a resume takes the score and inputs from the journal", hint="Pass score=None.")
        return _Call(None, config, Resume(resume, dict(inputs or {}), config.bus, durable), trust, journal, home)
    if score is None:
        raise UsageError("perform needs a score", hint="perform('scores/code-review.yaml', simulate=True)")
    loaded = score if not isinstance(score, str | Path) else load_score(Path(score))
    values = resolve_inputs(
        loaded.score if isinstance(loaded, Program) else loaded, dict(inputs or {}), allow_path=trust.allow_path
    )
    return _Call(loaded, replace(config, inputs=values), None, trust, journal, home)


def _finished(run: Run, result: RunResult) -> RunResult:
    """The run's end journaled; its cost as the document shows it (``to_json`` rounds to 1e-8
    USD), so a caller reads the figure ``hct perform --json`` prints."""
    run.finish(result)
    result.cost_usd = round(result.cost_usd, 8)
    return result


def _prepare(call: _Call) -> AbstractContextManager[Run]:
    return prepare(call.source, call.config, resume=call.resume, trust=call.trust, journal=call.journal, home=call.home)


def perform(
    score: Source | None,
    *,
    inputs: Mapping[str, str] | None = None,
    simulate: bool = False,
    seed: int = 0,
    dispatch: str = "reactive",
    budget_usd: float | None = None,
    journal: bool = True,
    observers: Sequence[Observer] = (),
    local: str | None = None,
    time_scale: float = 1.0,
    cache: bool = True,
    durable: str | None = None,
    bus: str | None = None,
    allow_exec: bool = False,
    allow_path: bool = False,
    resume: str | None = None,
    home: Path | None = None,
) -> RunResult:
    """Run ``score`` (a path or a loaded :class:`~hct_cli.score.Score`) to its end in a new event
    loop; Ctrl-C ends it ``interrupted``, journaled, as in the CLI. ``inputs`` are given as
    ``--input`` gives them (``NAME: "@file"`` reads a file)."""
    call = _call(
        score,
        RunConfig({}, seed, simulate, time_scale, local, dispatch, budget_usd, cache, durable or "normal", bus),
        inputs=inputs,
        durable=durable,
        resume=resume,
        trust=Trust(allow_exec=allow_exec, allow_path=allow_path),
        journal=journal,
        home=home,
    )
    with _prepare(call) as run:
        run.cast(observers)
        try:
            result = asyncio.run(run.play())
        except (KeyboardInterrupt, asyncio.CancelledError):
            result = run.performer.interrupted()
        return _finished(run, result)


async def aperform(
    score: Source | None,
    *,
    inputs: Mapping[str, str] | None = None,
    simulate: bool = False,
    seed: int = 0,
    dispatch: str = "reactive",
    budget_usd: float | None = None,
    journal: bool = True,
    observers: Sequence[Observer] = (),
    local: str | None = None,
    time_scale: float = 1.0,
    cache: bool = True,
    durable: str | None = None,
    bus: str | None = None,
    allow_exec: bool = False,
    allow_path: bool = False,
    resume: str | None = None,
    home: Path | None = None,
) -> RunResult:
    """:func:`perform` in the running event loop. Cancelled, the run is journaled
    ``interrupted`` and the cancellation goes on. Preparing the run (loading, the local model's
    server, the bus's first answer) blocks the loop until the first call."""
    call = _call(
        score,
        RunConfig({}, seed, simulate, time_scale, local, dispatch, budget_usd, cache, durable or "normal", bus),
        inputs=inputs,
        durable=durable,
        resume=resume,
        trust=Trust(allow_exec=allow_exec, allow_path=allow_path),
        journal=journal,
        home=home,
    )
    run: Run
    with _prepare(call) as run:
        run.cast(observers)
        try:
            result = await run.play()
        except asyncio.CancelledError:
            _finished(run, run.performer.interrupted())
            raise
        return _finished(run, result)
