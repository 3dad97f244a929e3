"""Typer wiring: parse the command line, call one plain function, nothing else.

Each command imports its implementation inside its body, so ``hct --help`` and ``hct lint``
load only what they use (never litellm, textual or redis).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hct_cli import __version__
from hct_cli.cli.boundary import run_command
from hct_cli.cli.options import JsonOption, path_argument

__all__ = ["app", "main"]

app = typer.Typer(
    name="hct",
    help="Run teams of LLM agents from a declarative YAML score.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hct {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Run teams of LLM agents from a declarative YAML score.

    Start with `hct init NAME`, check with `hct lint SCORE`, run with `hct perform SCORE --simulate`.
    """


@app.command()
def lint(
    scores: Annotated[list[Path], path_argument("Score files to check.")],
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", help="Output: text, json, github (workflow annotations) or sarif."),
    ] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Check scores: schema, cue graph, state access, templates, routing.

    Exit 0 when clean, 1 when a finding is an error (or a warning with --strict), 2 on misuse.
    """
    from hct_cli.cli.lint import lint as run

    chosen = "json" if as_json else fmt
    run_command(lambda: run(scores, chosen, strict=strict), as_json=chosen == "json")


@app.command()
def tools(
    score: Annotated[Path, path_argument("The score whose tool servers to list.")],
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="NAME=VALUE or NAME=@file; repeatable.")
    ] = None,
    trust: Annotated[
        bool, typer.Option("--trust", help="Add the score's stdio servers to the allow list, then list.")
    ] = False,
    allow_exec: Annotated[
        bool, typer.Option("--allow-exec", help="Allow stdio servers that are not in the allow list to start.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start each tool server of a score, list its tools (input schema, effects), stop it.

    The lists are saved so `hct lint` checks the tool names agents use. Exit 1 when a server fails.
    """
    from hct_cli.cli.tools import tools as run

    run_command(
        lambda: run(score, as_json=as_json, inputs=inputs or [], trust=trust, allow_exec=allow_exec), as_json=as_json
    )


@app.command()
def perform(
    score: Annotated[Path | None, path_argument("The score to run.")] = None,
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Use the reproducible simulated provider: no keys, no network.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every simulated draw.")] = 0,
    time_scale: Annotated[
        float,
        typer.Option("--time-scale", help="With --simulate: multiply simulated latencies, e.g. 0.01 to fast-forward."),
    ] = 1.0,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="NAME=VALUE or NAME=@file; repeatable.")
    ] = None,
    dispatch: Annotated[str, typer.Option("--dispatch", help="reactive (default), batch or sequential.")] = "reactive",
    allow_exec: Annotated[bool, typer.Option("--allow-exec", help="Allow python and shell agents to run.")] = False,
    allow_path: Annotated[
        bool, typer.Option("--allow-path", help="Allow input files outside their base directory.")
    ] = False,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Spend cap in USD (overrides routing.budget_usd).")
    ] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="Serve the local tier (--local=all: every tier) with a real model on this machine."
        ),
    ] = False,
    local_all: Annotated[bool, typer.Option("--local-all", hidden=True)] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            help="Continue a journaled run (after a crash, Ctrl-C or a caesura); "
            "without RUN, the latest one that can be resumed.",
            metavar="[RUN]",
        ),
    ] = None,
    resume_latest: Annotated[bool, typer.Option("--resume-latest", hidden=True)] = False,
    resend_writes: Annotated[
        bool,
        typer.Option(
            "--resend-writes",
            help="With --resume: send again the write tool calls in doubt (sent, their result never "
            "journaled), once you have checked they did not happen.",
        ),
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Call every model even when an identical call was answered before.")
    ] = False,
    durable: Annotated[
        str | None,
        typer.Option(
            "--durable",
            help="normal (survives a killed process; the default) or full (a power cut too; slower). "
            "A resume keeps the run's own unless given.",
        ),
    ] = None,
    no_tui: Annotated[
        bool, typer.Option("--no-tui", help="The plain progress view even on a terminal (no conductor).")
    ] = False,
    exit_on_finish: Annotated[
        bool, typer.Option("--exit-on-finish", help="Close the conductor when the run ends; print the summary.")
    ] = False,
    bus: Annotated[
        str | None,
        typer.Option(
            "--bus",
            help="Distributed mode: issue model calls on Redis (redis://HOST:PORT/DB) to `hct worker` processes. "
            "The journal keeps the URL without its password: a --resume reads it from HCT_REDIS_PASSWORD.",
            metavar="URL",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a score: every agent fires the moment its cues have been broadcast.

    On a terminal the conductor shows the run live (space pauses, a/r decide a human fermata,
    c calls a caesura, / filters the signals, q quits); --no-tui or --json print plainly.

    Every run is journaled under $HCT_HOME; `--resume RUN` continues one without paying again for
    any call whose result was journaled (`--resume` alone: the latest interrupted, crashed, failed
    or caesura run; a completed run is left as it is). Exits 0 only when the run completes.
    """
    from hct_cli.cli.perform import perform_command

    run_command(
        lambda: perform_command(
            score,
            simulate=simulate,
            seed=seed,
            inputs=inputs or [],
            dispatch=dispatch,
            allow_exec=allow_exec,
            allow_path=allow_path,
            budget=budget,
            as_json=as_json,
            local="all" if local_all else "local" if local else None,
            time_scale=time_scale,
            resume=resume,
            resume_latest=resume_latest,
            resend_writes=resend_writes,
            cache=not no_cache,
            durable=durable,
            tui=not no_tui,
            exit_on_finish=exit_on_finish,
            bus=bus,
        ),
        as_json=as_json,
    )


@app.command()
def runs(
    limit: Annotated[int | None, typer.Option("--limit", "-n", help="Show only the newest N runs.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List journaled runs, newest first: id, score, status, start, cost."""
    from hct_cli.cli.runs import runs_command

    run_command(lambda: runs_command(as_json=as_json, limit=limit), as_json=as_json)


@app.command()
def show(
    run: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).", show_default=False)],
    trace: Annotated[
        Path | None, typer.Option("--trace", help="Also write a Chrome trace-event JSON file (open in Perfetto).")
    ] = None,
    outputs: Annotated[
        bool, typer.Option("--outputs", help="Print every agent's output and the final shared state as plain text.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one run: every agent, every call (paid, cached, lost in a crash)."""
    from hct_cli.cli.runs import show_command

    run_command(lambda: show_command(run, as_json=as_json, trace=trace, outputs=outputs), as_json=as_json)


@app.command()
def replay(
    run: Annotated[str, typer.Argument(help="A run id (or a unique prefix of one).", show_default=False)],
    speed: Annotated[
        float, typer.Option("--speed", help="Playback speed: 1 is the run's own pace, 10 ten times faster.")
    ] = 1.0,
    exit_on_finish: Annotated[
        bool, typer.Option("--exit-on-finish", help="Close the conductor when the replay ends.")
    ] = False,
    no_tui: Annotated[bool, typer.Option("--no-tui", help="Print the signals as lines instead.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Play a journaled run again in the conductor (its signals as lines off a terminal)."""
    from hct_cli.cli.replay import replay_command

    run_command(
        lambda: replay_command(run, speed=speed, exit_on_finish=exit_on_finish, as_json=as_json, tui=not no_tui),
        as_json=as_json,
    )


def _decision(verdict: str, summary: str) -> None:
    """Register ``hct approve`` or ``hct reject``: the same command with another verdict."""

    def decide(
        run: Annotated[str, typer.Argument(help="The run id.", show_default=False)],
        agent: Annotated[str, typer.Argument(help="The agent whose result waits for a person.", show_default=False)],
        note: Annotated[str, typer.Option("--note", help="Why (journaled with the decision).")] = "",
        as_json: JsonOption = False,
    ) -> None:
        from hct_cli.cli.approve import decide_command

        run_command(lambda: decide_command(run, agent, verdict, note=note, as_json=as_json), as_json=as_json)

    decide.__doc__ = summary
    app.command(name=verdict)(decide)


_decision("approve", "Approve an agent's result held at a human fermata (from any shell).")
_decision("reject", "Reject an agent's result held at a human fermata: its on_fail applies (retry, escalate, caesura).")


@app.command()
def bench(
    score: Annotated[Path | None, path_argument("A score to measure.")] = None,
    synthetic: Annotated[
        str | None, typer.Option("--synthetic", help="Measure a generated workload instead: random.")
    ] = None,
    agents: Annotated[int, typer.Option("--agents", help="Agents in the synthetic DAG.")] = 1000,
    latency_ms: Annotated[
        str, typer.Option("--latency-ms", help="Synthetic latency range LO:HI in milliseconds.")
    ] = "10:200",
    compare: Annotated[
        str,
        typer.Option(
            "--compare",
            help="Policies to compare with reactive (batch, sequential), coherence policies (replay, hold, "
            "off, coherence-off), or no-listen (the run without the listening policy).",
        ),
    ] = "",
    trials: Annotated[int, typer.Option("--trials", help="Trials per policy (medians are reported).")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the DAG and of trial 1.")] = 0,
    emit: Annotated[Path | None, typer.Option("--emit", help="Write the synthetic score as YAML.")] = None,
    gantt: Annotated[
        Path | None,
        typer.Option("--gantt", help="Draw every measured policy's timeline as SVG (tiers, critical path, time axis)."),
    ] = None,
    time_scale: Annotated[
        float, typer.Option("--time-scale", help="Multiply simulated latencies, e.g. 0.1 for a quick comparison.")
    ] = 1.0,
    journal: Annotated[
        bool, typer.Option("--journal", help="Journal every trial as perform does (SQLite WAL, group commit).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Measure dispatch (or coherence) policies: makespan, ratios, critical-path bound, overhead per agent."""
    from hct_cli.cli.bench import bench_command

    run_command(
        lambda: bench_command(
            score,
            synthetic=synthetic,
            agents=agents,
            latency_ms=latency_ms,
            compare=compare,
            trials=trials,
            seed=seed,
            emit=emit,
            gantt=gantt,
            as_json=as_json,
            time_scale=time_scale,
            journal=journal,
        ),
        as_json=as_json,
    )


@app.command()
def graph(
    score: Annotated[Path, path_argument("The score to draw.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Draw a score's cue graph as Mermaid or Graphviz DOT."""
    from hct_cli.cli.graph import graph as run

    run_command(lambda: run(score, fmt))


@app.command()
def route(
    score: Annotated[Path, path_argument("The score to route.")],
    as_json: JsonOption = False,
) -> None:
    """Show the tempo x dynamics routing table and each agent's tier, model and reason."""
    from hct_cli.cli.route import route as run

    run_command(lambda: run(score, as_json=as_json), as_json=as_json)


@app.command()
def worker(
    bus: Annotated[
        str, typer.Option("--bus", help="The Redis URL conductors issue on (redis://HOST:PORT/DB).", metavar="URL")
    ],
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Calls in flight at most.")] = 8,
    tiers: Annotated[
        list[str] | None, typer.Option("--tiers", help="Serve only these tiers (comma-separated or repeated).")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option("--id", help="This worker's name (default: HOST-PID).", metavar="NAME")
    ] = None,
    claim_after: Annotated[
        float, typer.Option("--claim-after", help="Take over a worker's calls once it has been silent this long (s).")
    ] = 5.0,
    heartbeat: Annotated[float, typer.Option("--heartbeat", help="Seconds between heartbeats.")] = 1.0,
    drain: Annotated[
        float,
        typer.Option("--drain", help="On SIGTERM, seconds calls in flight get to finish before being handed back."),
    ] = 30.0,
    allow_exec: Annotated[
        bool,
        typer.Option(
            "--allow-exec",
            help="Let tool servers on: worker start programs on this machine (else only those on its allow list).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the model calls that `hct perform --bus URL` issues, for any number of runs.

    Run as many as you like, on any machines that reach the Redis server. A worker needs nothing
    but the bus: each work item says how to make its call (real models use this machine's keys).
    It also runs the score's tool servers marked on: worker, with this machine's environment.
    """
    from hct_cli.cli.worker import worker_command

    run_command(
        lambda: worker_command(
            bus,
            concurrency=concurrency,
            tiers=tiers or [],
            worker_id=worker_id,
            claim_after_s=claim_after,
            heartbeat_s=heartbeat,
            drain_s=drain,
            as_json=as_json,
            allow_exec=allow_exec,
        ),
        as_json=as_json,
    )


@app.command()
def schema() -> None:
    """Print the score JSON Schema (for editors and other tools)."""
    from hct_cli.cli.schema import print_schema

    run_command(print_schema)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Name of the score; writes NAME.yaml.")],
    directory: Annotated[Path, typer.Option("--dir", help="Directory to write into.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Write a commented starter score."""
    from hct_cli.cli.init import init_score

    run_command(lambda: init_score(name, directory, force=force, as_json=as_json), as_json=as_json)


def _spell_out(argv: list[str]) -> list[str]:
    """Options with an optional value, spelt as hidden flags (the parser has no optional values):
    ``--local=all`` as ``--local-all``, ``--resume`` without a run (last, or before another
    option) as ``--resume-latest``."""
    spelt = []
    for i, arg in enumerate(argv):
        if arg == "--local=all":
            arg = "--local-all"
        elif arg == "--resume" and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            arg = "--resume-latest"
        spelt.append(arg)
    return spelt


def main() -> None:
    """Entry point of the ``hct`` console script."""
    app(args=_spell_out(sys.argv[1:]), prog_name="hct")
