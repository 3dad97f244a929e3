"""``hct perform``: run a score."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from hct_cli.compile import StationSpec, compile_score
from hct_cli.engine.dispatch import POLICIES
from hct_cli.engine.events import Observer
from hct_cli.engine.perform import Performer
from hct_cli.errors import ExecNotAllowedError, RunError, UsageError
from hct_cli.inputs import parse_input_args, resolve_inputs
from hct_cli.providers.base import Provider
from hct_cli.score import Score, load_score

__all__ = ["perform_command"]


_SIGNALS = ("fermata", "vamp", "tacet_if", "attacca", "speculate")


def _warn_unenforced(score: Score) -> None:
    """Say plainly which declared signals this build does not act on yet."""
    used = sorted({signal for agent in score.agents.values() for signal in _SIGNALS if getattr(agent, signal, None)})
    if used:
        sys.stderr.write(
            f"note: this build does not enforce {', '.join(used)} yet: "
            "agents run once and their results commit unchecked\n"
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
) -> int:
    if dispatch not in POLICIES:
        raise UsageError(f"unknown dispatch {dispatch!r}", hint=f"Use one of: {', '.join(POLICIES)}.")
    if budget is not None and budget < 0:
        raise UsageError("--budget must be zero or more", hint="Pass a budget in USD, e.g. --budget 0.25.")
    score = load_score(path)
    program = compile_score(score)
    runs_code = [a.name for a in score.agents.values() if a.kind in ("python", "shell")]
    if runs_code and not allow_exec:
        raise ExecNotAllowedError(
            f"agents {', '.join(runs_code)} run code on this machine",
            hint="Read the score, then pass --allow-exec if you trust it.",
        )
    if not simulate:
        raise RunError(
            "this build runs scores on the simulated provider only",
            hint=f"Run `hct perform {path} --simulate`; real model calls through litellm are not wired in yet.",
        )
    values = resolve_inputs(score, parse_input_args(inputs), allow_path=allow_path)
    _warn_unenforced(score)

    from hct_cli.providers.exec import ExecProvider
    from hct_cli.providers.simulated import SimulatedProvider

    simulated = SimulatedProvider(seed)
    executor = ExecProvider()

    def provider_for(spec: StationSpec) -> Provider:
        return executor if spec.agent.kind in ("python", "shell") else simulated

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
    result = asyncio.run(performer.run())
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    else:
        from rich.console import Console

        from hct_cli.cli.plain import summary_table

        Console().print(summary_table(result))
    return 0 if result.status == "completed" else 1
