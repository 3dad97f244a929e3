"""What must hold before a run starts: code runs only when trusted, every schema ref resolves,
every routed model can be called. Each refuses the run before anything is paid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hct_cli.errors import CredentialsError, ExecNotAllowedError
from hct_cli.program.checks import SchemaRefs
from hct_cli.program.compile import Program
from hct_cli.score import Score
from hct_cli.score.tools import ToolServer

__all__ = [
    "check_credentials",
    "needs_exec",
    "refuse_exec",
    "refuse_untrusted_tools",
    "schema_refs",
    "trusted_tools",
]


def needs_exec(score: Score) -> list[str]:
    """Agents that run code on this machine: python and shell agents, python checks."""
    from hct_cli.score.model import checks_of

    return [
        agent.name
        for agent in score.agents.values()
        if agent.kind in ("python", "shell") or any(check.python for _, check in checks_of(agent))
    ]


def refuse_exec(score: Score, allow_exec: bool) -> None:
    runs_code = needs_exec(score)
    if runs_code and not allow_exec:
        raise ExecNotAllowedError(
            f"agents {', '.join(runs_code)} run code on this machine",
            hint="Read the score, then pass --allow-exec if you trust it.",
        )


def trusted_tools(home: Path | None) -> Callable[[ToolServer], bool]:
    """Whether a tool server of a score is on the user's allow list (``hct tools --trust``)."""
    from hct_cli.store.home import home_dir
    from hct_cli.tools.trust import is_trusted

    return is_trusted((home or home_dir()) / "tools.allow")


def refuse_untrusted_tools(score: Score, allow_exec: bool, home: Path | None, *, distributed: bool = False) -> None:
    """A stdio tool server is a local program: it runs with --allow-exec or when trusted. In
    distributed mode a server ``on: worker`` is not this machine's to start: its worker decides."""
    if allow_exec or not score.tools:
        return
    trusted = trusted_tools(home)
    programs = [
        name
        for name, server in score.tools.items()
        if server.transport == "stdio" and not (distributed and server.on == "worker") and not trusted(server)
    ]
    if programs:
        raise ExecNotAllowedError(
            f"tool servers {', '.join(programs)} are programs this run would start on this machine",
            hint="Read the score's tools: section, then pass --allow-exec, or trust them once with "
            "`hct tools --trust SCORE`.",
        )


def schema_refs(score: Score, allow_path: bool) -> SchemaRefs:
    """What resolves the score's JSON Schema refs, every file they name read now: a ref that is
    refused or does not resolve stops the run before it starts (CheckError)."""
    from hct_cli.score.model import Check, checks_of

    refs = SchemaRefs(score.base_dir, allow_path=allow_path)
    refs.preload(check for agent in score.agents.values() for _, check in checks_of(agent))
    refs.preload(Check(json_schema=a.output.schema) for a in score.agents.values() if a.output is not None)
    refs.preload(Check(json_schema=key.schema) for key in score.state.values() if key.schema is not None)
    return refs


def check_credentials(program: Program, provider: Any) -> None:
    """Before the first call: every routed model must be callable, or the run does not start.
    A provider that says nothing of its models (no ``problem`` method) can call them all."""
    problem_of = getattr(provider, "problem", None)
    if problem_of is None:
        return
    missing: dict[str, tuple[str, list[str]]] = {}
    for name, spec in program.stations.items():
        if spec.agent.kind != "llm":
            continue
        model = spec.route.model
        if model in missing:
            missing[model][1].append(name)
            continue
        problem = problem_of(model)
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
