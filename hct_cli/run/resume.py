"""What a resume takes from the journal: which run, and its inputs at their real values."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from hct_cli.errors import RunError, RunNotFoundError, UsageError
from hct_cli.program.inputs import resolve_inputs
from hct_cli.score import Score
from hct_cli.store.journal import RunConfig
from hct_cli.store.runs import RunRow

__all__ = ["RESUMABLE", "RunCompleted", "latest_resumable", "unsealed"]

#: Run statuses ``--resume`` without a run picks from: stopped before the end by a crash, a
#: person, a failed call or a caesura. A budget_exhausted run would stop again at the same cap
#: (a resume keeps it), so it is resumed only when named.
RESUMABLE = ("interrupted", "crashed", "failed", "caesura")


class RunCompleted(RunError):
    """The run asked to resume is completed: there is nothing to resume, and nothing changes."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} is completed: nothing to resume", hint=f"See it with `hct show {run_id}`.")
        self.run_id = run_id


def latest_resumable(db: sqlite3.Connection) -> RunRow:
    """The most recently started run that can be resumed."""
    from hct_cli.store.runs import list_runs

    runs = list_runs(db)
    for run in runs:
        if run.status in RESUMABLE:
            return run
    if not runs:
        raise RunNotFoundError("no run to resume: nothing is journaled yet", hint="Start one with `hct perform SCORE`.")
    raise RunNotFoundError(
        "no run to resume: no journaled run is interrupted, crashed, failed or stopped at a caesura",
        hint="List the runs with `hct runs`; `hct perform --resume RUN` continues one by its id.",
    )


def unsealed(config: RunConfig, score: Score, run_id: str, given: Mapping[str, str], *, allow_path: bool) -> RunConfig:
    """The journaled configuration with every input that held a secret back at its real value:
    from the secret's variable, or given again with ``--input``. Never a redaction placeholder."""
    from hct_cli.redact import placeholders, unseal

    sealed = config.sealed
    extra = sorted(set(given) - set(sealed))
    if extra:
        may = f"only {', '.join(sorted(sealed))} may be given again" if sealed else "this run has none"
        raise UsageError(
            "--resume takes the score and inputs from the journal",
            hint=f"--input on a resume gives again an input the journal keeps redacted ({may}): "
            f"run `hct perform --resume {run_id}` without --input {extra[0]}.",
        )
    if not sealed:
        return config
    # Only the inputs given again are read (the others, a required one among them, are journaled).
    only = replace(score, inputs=MappingProxyType({name: score.inputs[name] for name in given}))
    values = resolve_inputs(only, given, allow_path=allow_path) if given else {}
    inputs = dict(config.inputs)
    for name, seal in sealed.items():
        redacted = inputs.get(name)
        value = unseal(redacted, seal, os.environ, values.get(name) if name in given else None)
        if value is None:
            secrets = ", ".join(f"${n}" for n in placeholders(redacted)) or "an environment secret"
            if name in given:
                why = "the value given is not the one the run started with"
            else:
                why = f"{secrets} is not set, or no longer holds the value it had"
            raise UsageError(
                f"input {name!r} of run {run_id} held {secrets}, which the journal keeps only redacted, "
                f"and {why}: the run will not go on with a placeholder instead",
                hint=f"Set {secrets.replace('$', '')} to the value it had when the run started, or give the "
                f"input again: `hct perform --resume {run_id} --input {name}=...`.",
            )
        inputs[name] = value
    return replace(config, inputs=inputs)
