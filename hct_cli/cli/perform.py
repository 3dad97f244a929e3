"""``hct perform``: run a score."""

from __future__ import annotations

import asyncio
import math
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from hct_cli.engine import EngineOptions, Hands, ResumeState
from hct_cli.engine.dispatch import POLICIES
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.errors import CredentialsError, ExecNotAllowedError, RunNotFoundError, UsageError
from hct_cli.events import Event, Observer
from hct_cli.jsonio import dumps
from hct_cli.program.checks import SchemaRefs
from hct_cli.program.compile import Program, StationSpec, compile_score
from hct_cli.program.inputs import ask_on_terminal, parse_input_args, resolve_inputs
from hct_cli.program.lint import load_score, load_score_text
from hct_cli.program.routing import tiers_of
from hct_cli.providers.base import Provider
from hct_cli.redact import Redactor
from hct_cli.score import Score
from hct_cli.store.journal import RunConfig
from hct_cli.store.runs import RunRow

if TYPE_CHECKING:
    import sqlite3

    from hct_cli.distributed.session import Session
    from hct_cli.engine.context import Tokenizer
    from hct_cli.providers.human import HumanDesk
    from hct_cli.providers.litellm_provider import LiteLLMProvider
    from hct_cli.tui.ensemble import Ensemble

__all__ = ["perform_command"]


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


def _needs_exec(score: Score) -> list[str]:
    """Agents that run code on this machine: python and shell agents, python checks."""
    from hct_cli.score.model import checks_of

    return [
        agent.name
        for agent in score.agents.values()
        if agent.kind in ("python", "shell") or any(check.python for _, check in checks_of(agent))
    ]


def perform_command(
    path: Path | None,
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
    resume: str | None = None,
    resume_latest: bool = False,
    cache: bool = True,
    durable: str | None = None,
    tui: bool = True,
    exit_on_finish: bool = False,
    bus: str | None = None,
) -> int:
    from hct_cli.tui import on_a_terminal

    view = _View(tui and not as_json and on_a_terminal(), exit_on_finish)
    if durable not in (None, "normal", "full"):
        raise UsageError(f"unknown --durable value {durable!r}", hint="Use normal (survives a killed process) or full.")
    if bus is not None:
        from hct_cli.distributed.session import check_bus_url

        check_bus_url(bus)
    if resume is not None or resume_latest:
        if path is not None:
            raise UsageError(
                "--resume takes the score and inputs from the journal",
                hint=f"Run `hct perform --resume{' ' + resume if resume else ''}` without a score.",
            )
        if resume is not None and resume_latest:
            raise UsageError("--resume was given twice", hint="Give it once: `hct perform --resume RUN`, or alone.")
        return _perform(
            None,
            resume=resume,
            as_json=as_json,
            allow_exec=allow_exec,
            allow_path=allow_path,
            durable=durable,
            view=view,
            bus=bus,
            given=parse_input_args(inputs),
        )
    if path is None:
        raise UsageError("perform needs a score", hint="Run `hct perform SCORE --simulate`, or --resume RUN.")
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
    # A person at the terminal is asked for inputs without a value (stdout may be piped: the
    # question goes to stderr); anywhere else the run is refused before anything is journaled.
    someone = all(stream is not None and stream.isatty() for stream in (sys.stdin, sys.stderr))
    values = resolve_inputs(
        score, parse_input_args(inputs), allow_path=allow_path, ask=ask_on_terminal if someone else None
    )
    config = RunConfig(
        inputs=values,
        seed=seed,
        simulate=simulate,
        time_scale=time_scale,
        local=local,
        dispatch=dispatch,
        budget_usd=budget,
        cache=cache,
        durable=durable or "normal",
        bus=bus,
    )
    return _perform(
        (score, path, config),
        resume=None,
        as_json=as_json,
        allow_exec=allow_exec,
        allow_path=allow_path,
        durable=durable,
        view=view,
    )


def _unsealed(config: RunConfig, score: Score, run_id: str, given: Mapping[str, str], *, allow_path: bool) -> RunConfig:
    """The journaled configuration with every input that held a secret back at its real value:
    from the secret's variable, or given again with ``--input``. Never a redaction placeholder."""
    import os

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


def _refuse_exec(score: Score, allow_exec: bool) -> None:
    runs_code = _needs_exec(score)
    if runs_code and not allow_exec:
        raise ExecNotAllowedError(
            f"agents {', '.join(runs_code)} run code on this machine",
            hint="Read the score, then pass --allow-exec if you trust it.",
        )


def _schema_refs(score: Score, allow_path: bool) -> SchemaRefs:
    """What resolves the score's JSON Schema refs, every file they name read now: a ref that is
    refused or does not resolve stops the run before it starts (CheckError)."""
    from hct_cli.score.model import checks_of

    refs = SchemaRefs(score.base_dir, allow_path=allow_path)
    refs.preload(check for agent in score.agents.values() for _, check in checks_of(agent))
    return refs


def _perform(
    fresh: tuple[Score, Path, RunConfig] | None,
    *,
    resume: str | None,
    as_json: bool,
    allow_exec: bool,
    allow_path: bool = False,
    durable: str | None,
    view: _View,
    bus: str | None = None,
    given: Mapping[str, str] | None = None,
) -> int:
    """Run a new score (``fresh``) or the next segment of a journaled run (``resume``; None: the
    latest that can be resumed); ``bus`` overrides the journaled bus of a resumed run, ``given``
    gives again inputs it journaled redacted."""
    from hct_cli.store.home import connect
    from hct_cli.store.lock import claim
    from hct_cli.store.runs import find_run

    refs: SchemaRefs | None = None
    if fresh is not None:
        _refuse_exec(fresh[0], allow_exec)  # before anything is written
        refs = _schema_refs(fresh[0], allow_path)
    db = connect(durable=durable or "normal")
    # One performer a run: held from before the journal is read (a resume recalls what it holds)
    # until the segment's end is journaled.
    if fresh is None:
        row = find_run(db, resume) if resume is not None else _latest_resumable(db)
        if row.status == "completed":
            return _completed(row.run_id, as_json)
        run_id = row.run_id
    else:
        run_id = uuid.uuid4().hex[:12]
    with claim(db, run_id):
        return _perform_claimed(
            db,
            run_id,
            fresh,
            as_json=as_json,
            allow_exec=allow_exec,
            allow_path=allow_path,
            refs=refs,
            latest=fresh is None and resume is None,
            durable=durable,
            view=view,
            bus=bus,
            given=given or {},
        )


def _perform_claimed(
    db: sqlite3.Connection,
    run_id: str,
    fresh: tuple[Score, Path, RunConfig] | None,
    *,
    as_json: bool,
    allow_exec: bool,
    allow_path: bool,
    refs: SchemaRefs | None,
    latest: bool,
    durable: str | None,
    view: _View,
    bus: str | None,
    given: Mapping[str, str],
) -> int:
    from hct_cli.store.home import set_durability
    from hct_cli.store.journal import Journal
    from hct_cli.store.runs import find_run, recall, spend, squashed_versions

    recalled = None
    spent_before = 0.0
    start_versions: dict[str, int] = {}
    if fresh is not None:
        score, score_path, config = fresh
        run_row = None
    else:
        run_row = find_run(db, run_id)  # again, now that it is ours: a segment may have ended meanwhile
        if run_row.status == "completed":
            return _completed(run_id, as_json)
        config = run_row.config
        if durable is None and config.durable != "normal":
            set_durability(db, config.durable)  # as journaled, unless --durable says otherwise
        base = Path(run_row.score_path) if run_row.score_path else None
        score = load_score_text(run_row.score_text, run_row.score_path or run_row.score, base)
        config = _unsealed(config, score, run_id, given, allow_path=allow_path)
        recalled = recall(db, run_id)
        spent_before = spend(db, run_id)
        start_versions = squashed_versions(db, run_id)
        if bus is not None:
            config = replace(config, bus=bus)
        elif config.bus is not None:
            from hct_cli.distributed.session import journaled_bus_url

            config = replace(config, bus=journaled_bus_url(config.bus, run_id))
    if config.local is not None:
        score = _route_to_local(score, everything=config.local == "all")
    program = compile_score(score)
    _refuse_exec(score, allow_exec)
    if refs is None:  # a resume: the files beside the journaled score's path, read again
        refs = _schema_refs(score, allow_path)
    from hct_cli.providers.exec import ExecProvider

    executor = ExecProvider()
    session = _session(program, config, quiet=as_json and not sys.stderr.isatty())
    with ExitStack() as stack:
        models: Provider
        tokenizer: Tokenizer | None = None  # simulated calls count about four characters a token
        if config.simulate:
            from hct_cli.providers.simulated import SimulatedProvider

            models = SimulatedProvider(config.seed, time_scale=config.time_scale)
        else:
            from hct_cli.providers.litellm_provider import Endpoint, LiteLLMProvider, token_counter

            tokenizer = token_counter

            # A tier may name its own OpenAI-compatible server (routing.tiers.NAME.api_base).
            endpoints = {
                tier.model: Endpoint(tier.api_base, api_key=None) for tier in program.tiers.values() if tier.api_base
            }
            if config.local is not None:
                from hct_cli.providers.local import LOCAL_MODEL, LocalServer

                sys.stderr.write("starting the local model server...\n")
                endpoints[LOCAL_MODEL] = stack.enter_context(LocalServer()).endpoint
            litellm_provider = LiteLLMProvider(endpoints=endpoints)
            if session is None:  # in distributed mode the workers' own keys make the calls
                _check_credentials(program, litellm_provider)
            models = litellm_provider
        judges = models  # gates are decided in the conductor, in any mode
        if session is not None:
            models = session.provider
        if config.cache:
            from hct_cli.store.cache import ResultCache
            from hct_cli.store.cached import CachingProvider

            models = CachingProvider(models, ResultCache(db), simulated_seed=config.seed if config.simulate else None)

        def provider_for(spec: StationSpec) -> Provider:
            return executor if spec.agent.kind in ("python", "shell") else models

        score_text = score.document.text if score.document is not None else ""
        journal = (
            Journal.resume(db, run_row)
            if run_row is not None
            else Journal.start(db, run_id, score.name, str(score_path.resolve()), score_text, config)
        )
        verb = f"run {run_id}"
        if run_row is not None:
            picked = "" if not latest else f", the latest run to resume ({_when(run_row)}; "
            verb = f"resuming run {run_id}{picked or ' ('}segment {journal.segment})"
        sys.stderr.write(f"{verb}: journaled; resume with `hct perform --resume {run_id}` after a crash\n")
        plain = not view.tui and (not as_json or sys.stderr.isatty())
        observers: list[Observer] = [journal]
        ensemble = None
        if view.tui:
            from hct_cli.tui.ensemble import Ensemble

            ensemble = Ensemble(program, budget_usd=config.budget(score), run_id=run_id)
            observers.append(ensemble)
        elif plain:
            from hct_cli.cli.plain import PlainLog

            observers.append(PlainLog(len(program.stations)))
        else:
            observers.append(_approval_notice(run_id))
        from hct_cli.engine.gates import Gatekeeper
        from hct_cli.providers.human import HumanDesk
        from hct_cli.store.cache import Predictors

        desk = HumanDesk(run_id, db, terminal=plain and not as_json and sys.stdin.isatty() and sys.stderr.isatty())
        performer = Performer(
            program,
            Hands(
                provider_for,
                judge_provider=judges,
                tokenizer=tokenizer,
                gates=Gatekeeper(
                    tiers=program.tiers,
                    simulate_seed=config.seed if config.simulate else None,
                    allow_exec=allow_exec,
                    desk=desk,
                    refs=refs,
                ),
                predictors=Predictors(db),
            ),
            inputs=config.inputs,
            options=EngineOptions(
                dispatch=config.dispatch, budget_usd=config.budget(score), digests=True, run_id=run_id
            ),
            resume=ResumeState(recall=recalled or {}, start_versions=start_versions, spent_before_usd=spent_before),
            observers=observers,
        )
        journal.on_failure = performer.fail
        tiers = list(program.tiers)
        play = (lambda: session.play(performer, tiers)) if session is not None else performer.run
        if ensemble is not None:
            result = _conduct(performer, desk, ensemble, view.exit_on_finish, play, session)
        else:
            try:
                result = asyncio.run(_until_stopped(play))
            except (KeyboardInterrupt, asyncio.CancelledError):
                sys.stderr.write("interrupted\n")
                result = performer.interrupted()
        if performer.interruption is not None:
            sys.stderr.write(
                f"interrupted: {performer.interruption.rstrip('.')}. Continue with `hct perform --resume {run_id}` "
                "once it is back; nothing journaled is paid again.\n"
            )
        data = result.to_json()
        journal.finish(result.status, result.cost_usd, data)
    from hct_cli.store.runs import call_counts

    data.update(call_counts(db, run_id))
    data["segment"] = journal.segment
    if result.caesura is not None:
        sys.stderr.write(
            f"caesura: {result.caesura['agent'] or 'the conductor'} stopped the run; shared state is back at checkpoint "
            f"{result.caesura['checkpoint']}. Continue with `hct perform --resume {run_id}`.\n"
        )
    if as_json:
        sys.stdout.write(dumps(Redactor.from_environ().data(data), indent=2) + "\n")
    else:
        from hct_cli.cli.console import table_console
        from hct_cli.cli.plain import SUMMARY_ROWS, summary_table

        table_console().print(summary_table(data, SUMMARY_ROWS))
    if result.status in ("interrupted", "caesura"):
        # The last line: what to type to go on, whatever scrolled past before it.
        sys.stdout.flush()
        sys.stderr.write(f"continue with:\nhct perform --resume {run_id}\n")
    if result.status == "interrupted":
        return 130
    return 0 if result.status == "completed" else 1


#: Run statuses ``--resume`` without a run picks from: stopped before the end by a crash, a
#: person, a failed call or a caesura. A budget_exhausted run would stop again at the same cap
#: (a resume keeps it), so it is resumed only when named.
RESUMABLE = ("interrupted", "crashed", "failed", "caesura")


def _latest_resumable(db: sqlite3.Connection) -> RunRow:
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


def _when(run: RunRow) -> str:
    """How the run ended and how long ago, e.g. "interrupted 5 min ago"."""
    status = "stopped at a caesura" if run.status == "caesura" else run.status
    if run.ended_at is not None:
        return f"{status} {_ago(run.ended_at)}"
    return f"{status}, started {_ago(run.started_at)}"  # a crash journals no end


def _ago(at: float) -> str:
    seconds = max(0, int(time.time() - at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _completed(run_id: str, as_json: bool) -> int:
    """``--resume`` of a completed run: say so, change nothing; with --json, the run's document."""
    sys.stderr.write(f"run {run_id} is completed: nothing to resume (see it with `hct show {run_id}`)\n")
    if as_json:
        from hct_cli.cli.runs import _show_data

        data, _, _ = _show_data(run_id)
        sys.stdout.write(dumps(Redactor.from_environ().data(data), indent=2) + "\n")
    return 0


@dataclass(frozen=True)
class _View:
    """How the run is shown: the conductor (``tui``) or the plain log."""

    tui: bool
    exit_on_finish: bool = False


def _session(program: Program, config: RunConfig, *, quiet: bool) -> Session | None:
    """Distributed mode's session when the run has a bus; Redis must answer before anything runs."""
    if config.bus is None:
        return None
    from hct_cli.distributed.session import Session
    from hct_cli.distributed.work import Mode

    if config.simulate:
        mode = Mode("simulated", config.seed, config.time_scale)
    else:
        endpoints = {tier.model: tier.api_base for tier in program.tiers.values() if tier.api_base}
        mode = Mode("models", endpoints=endpoints, local=config.local is not None)

    def say(line: str) -> None:
        if not quiet:
            sys.stderr.write(line + "\n")

    session = Session(config.bus, mode, say=say)
    session.preflight()
    return session


def _conduct(
    performer: Performer,
    desk: HumanDesk,
    ensemble: Ensemble,
    exit_on_finish: bool,
    play: Callable[[], Awaitable[RunResult]],
    session: Session | None,
) -> RunResult:
    """Run under the conductor; the run's own fault, if any, is raised once the screen is back."""
    from hct_cli.tui.app import Conductor
    from hct_cli.tui.stage import LiveStage

    stage = LiveStage(performer, desk, play=play)
    app = Conductor(ensemble, stage, exit_on_finish=exit_on_finish, roster=session.roster if session else None)
    app.run()
    if app.error is not None:
        raise app.error
    if stage.result is None or stage.result.status == "interrupted":
        sys.stderr.write("interrupted\n")
        return stage.result or performer.interrupted()
    return stage.result


def _approval_notice(run_id: str) -> Observer:
    """Without the plain log (``--json`` off a terminal), still say when a person is needed."""

    def notice(event: Event) -> None:
        if event.kind == "fermata" and event.data.get("hold") == "approval":
            sys.stderr.write(
                f"fermata: {event.station}@{event.version} waits for a person: "
                f"hct approve {run_id} {event.station} (or hct reject)\n"
            )
            sys.stderr.flush()

    return notice


async def _until_stopped(play: Callable[[], Awaitable[RunResult]]) -> RunResult:
    """Run; SIGTERM cancels the run as Ctrl-C does (asyncio cancels on SIGINT itself).

    Cancelling the run's task, rather than raising from a signal handler, never lands an
    exception inside a call in flight: the performer cancels its calls and reports the run.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # no signals here (another thread, Windows)
        return await play()
    try:
        return await play()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
