"""``hct perform``: run a score."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from hct_cli.compile import Program, StationSpec, compile_score
from hct_cli.engine.dispatch import POLICIES
from hct_cli.engine.events import Observer
from hct_cli.engine.perform import Performer
from hct_cli.errors import CredentialsError, ExecNotAllowedError, UsageError
from hct_cli.inputs import parse_input_args, resolve_inputs
from hct_cli.providers.base import Provider
from hct_cli.routing import tiers_of
from hct_cli.score import Score, load_score

if TYPE_CHECKING:
    from hct_cli.providers.litellm_provider import LiteLLMProvider

__all__ = ["perform_command"]


_SIGNALS = ("tacet_if", "attacca", "speculate")


def _warn_unenforced(score: Score) -> None:
    """Say plainly which declared signals this build does not act on yet."""
    from hct_cli.checks import needs_gate

    used = sorted({signal for agent in score.agents.values() for signal in _SIGNALS if getattr(agent, signal, None)})
    if used:
        sys.stderr.write(
            f"note: this build does not enforce {', '.join(used)} yet: "
            "agents run once and their results commit unchecked\n"
        )
    unjudged = sorted(
        a.name
        for a in score.agents.values()
        if a.fermata is not None and (needs_gate(a.fermata.check) or a.fermata.on_fail == "caesura")
    )
    if unjudged:
        sys.stderr.write(
            f"note: the fermata of {', '.join(unjudged)} needs a python, judge or human check or a caesura, "
            "which this build does not run yet: such results commit unchecked, and a failed check that asks for a caesura fails the agent\n"
        )
    gated = sorted(a.name for a in score.agents.values() if a.vamp is not None and needs_gate(a.vamp.until))
    if gated:
        sys.stderr.write(
            f"note: the vamp of {', '.join(gated)} ends on a python, judge or human check, which this build "
            "does not run yet: it repeats until its max\n"
        )


def _route_to_local(score: Score, *, everything: bool) -> Score:
    """The score with its local tier (or every tier) served by the local model."""
    from hct_cli.providers.local import LOCAL_MODEL, LocalServer

    tiers = {
        name: replace(spec, model=LOCAL_MODEL, concurrency=LocalServer.slots, api_base=None)
        if everything or name == "local"
        else spec
        for name, spec in tiers_of(score).items()
    }
    return replace(score, routing=replace(score.routing, tiers=MappingProxyType(tiers)))


def _check_credentials(program: Program, provider: LiteLLMProvider) -> None:
    """Before the first call: every routed model must be callable, or the run does not start."""
    missing: dict[str, tuple[str, list[str]]] = {}
    for name, spec in program.stations.items():
        if spec.agent.kind != "llm":
            continue
        model = spec.route.model
        if model in missing:
            missing[model][1].append(name)
            continue
        problem = provider.problem(model)
        if problem is not None:
            missing[model] = (problem, [name])
    if not missing:
        return
    lines = []
    for model, (problem, agents) in missing.items():
        others = f" (and {len(agents) - 1} more agents)" if len(agents) > 1 else ""
        lines.append(f"agent {agents[0]!r}{others} routes to {model}: {problem}")
    raise CredentialsError(
        "cannot call every routed model:\n  " + "\n  ".join(lines),
        hint="Set the missing keys, or run with --simulate (no keys, reproducible) "
        "or --local (a real model on this machine, after pip install 'hct[local]').",
    )


def perform_command(
    path: Path,
    *,
    simulate: bool,
    seed: int,
    inputs: Sequence[str],
    dispatch: str,
    allow_exec: bool,
    allow_path: bool,
    budget: float | None,
    as_json: bool,
    local: str | None = None,
    time_scale: float = 1.0,
) -> int:
    if dispatch not in POLICIES:
        raise UsageError(f"unknown dispatch {dispatch!r}", hint=f"Use one of: {', '.join(POLICIES)}.")
    if budget is not None and not (math.isfinite(budget) and budget >= 0):
        raise UsageError("--budget must be zero or more", hint="Pass a budget in USD, e.g. --budget 0.25.")
    if local is not None and local not in ("local", "all"):
        raise UsageError(
            f"unknown --local value {local!r}",
            hint="Use --local (the local tier) or --local=all, after the score's path.",
        )
    if not math.isfinite(time_scale) or time_scale <= 0 or (time_scale != 1.0 and not simulate):
        raise UsageError(
            "--time-scale must be above zero and goes with --simulate",
            hint="Real calls take the time they take; e.g. --simulate --time-scale 0.1.",
        )
    if local is not None and simulate:
        raise UsageError("--local calls a real model; --simulate calls none", hint="Choose one of them.")
    score = load_score(path)
    if local is not None:
        score = _route_to_local(score, everything=local == "all")
    program = compile_score(score)
    runs_code = [a.name for a in score.agents.values() if a.kind in ("python", "shell")]
    if runs_code and not allow_exec:
        raise ExecNotAllowedError(
            f"agents {', '.join(runs_code)} run code on this machine",
            hint="Read the score, then pass --allow-exec if you trust it.",
        )
    values = resolve_inputs(score, parse_input_args(inputs), allow_path=allow_path)
    _warn_unenforced(score)

    from hct_cli.providers.exec import ExecProvider

    executor = ExecProvider()
    with ExitStack() as stack:
        models: Provider
        if simulate:
            from hct_cli.providers.simulated import SimulatedProvider

            models = SimulatedProvider(seed, time_scale=time_scale)
        else:
            from hct_cli.providers.litellm_provider import Endpoint, LiteLLMProvider

            # A tier may name its own OpenAI-compatible server (routing.tiers.NAME.api_base).
            endpoints = {
                tier.model: Endpoint(tier.api_base, api_key=None) for tier in program.tiers.values() if tier.api_base
            }
            if local is not None:
                from hct_cli.providers.local import LOCAL_MODEL, LocalServer

                sys.stderr.write("starting the local model server...\n")
                endpoints[LOCAL_MODEL] = stack.enter_context(LocalServer()).endpoint
            litellm_provider = LiteLLMProvider(endpoints=endpoints)
            _check_credentials(program, litellm_provider)
            models = litellm_provider

        def provider_for(spec: StationSpec) -> Provider:
            return executor if spec.agent.kind in ("python", "shell") else models

        observers: list[Observer] = []
        if not as_json or sys.stderr.isatty():
            from hct_cli.cli.plain import PlainLog

            observers.append(PlainLog(len(program.stations)))
        performer = Performer(
            program,
            provider_for,
            inputs=values,
            dispatch=dispatch,
            observers=observers,
            budget_usd=budget if budget is not None else score.routing.budget_usd,
        )
        with _sigterm_interrupts():
            try:
                result = asyncio.run(performer.run())
            except KeyboardInterrupt:
                sys.stderr.write("interrupted\n")
                result = performer.interrupted()
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    else:
        from rich.console import Console

        from hct_cli.cli.plain import summary_table

        Console().print(summary_table(result))
    if result.status == "interrupted":
        return 130
    return 0 if result.status == "completed" else 1


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C: results so far are reported and the local server stops."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
