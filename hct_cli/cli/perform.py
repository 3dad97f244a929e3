"""``hct perform``: run a score. Options become a RunConfig, the library runs it
(:mod:`hct_cli.run`), and this module shows it: the conductor or the plain log, the summary or
``--json``, and the lines that say how to go on."""

from __future__ import annotations

import asyncio
import math
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hct_cli.cli.lint import load_listed_score
from hct_cli.engine.dispatch import POLICIES
from hct_cli.engine.perform import Performer
from hct_cli.engine.result import RunResult
from hct_cli.errors import UsageError
from hct_cli.events import Event, Observer
from hct_cli.jsonio import dumps
from hct_cli.program.inputs import ask_on_terminal, parse_input_args, resolve_inputs
from hct_cli.redact import Redactor
from hct_cli.run.config import Resume, Trust
from hct_cli.score import Score
from hct_cli.store.journal import RunConfig

if TYPE_CHECKING:
    from hct_cli.distributed.session import Session
    from hct_cli.providers.human import HumanDesk
    from hct_cli.run.assemble import Run
    from hct_cli.store.runs import RunRow
    from hct_cli.tui.ensemble import Ensemble

__all__ = ["perform_command"]


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
    resend_writes: bool = False,
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
    if resend_writes and resume is None and not resume_latest:
        raise UsageError(
            "--resend-writes is for a resumed run's writes in doubt",
            hint="Run `hct perform --resume RUN --resend-writes`.",
        )
    if resume is not None or resume_latest:
        if path is not None:
            raise UsageError(
                "--resume takes the score and inputs from the journal",
                hint=f"Run `hct perform --resume{' ' + resume if resume else ''}` without a score.",
            )
        if resume is not None and resume_latest:
            raise UsageError("--resume was given twice", hint="Give it once: `hct perform --resume RUN`, or alone.")
        given = parse_input_args(inputs)
        trust = Trust(allow_exec=allow_exec, allow_path=allow_path)
        again = Resume(resume, given, bus, durable, resend_writes=resend_writes)
        return _perform(None, RunConfig(), again, as_json=as_json, trust=trust, view=view)
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
    score = load_listed_score(path)
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
    return _perform(score, config, None, as_json=as_json, trust=Trust(allow_exec, allow_path), view=view)


def _perform(
    score: Score | None, config: RunConfig, resume: Resume | None, *, as_json: bool, trust: Trust, view: _View
) -> int:
    """Run a new score, or (``resume``) the next segment of a journaled run, and show it."""
    from hct_cli.run.assemble import prepare
    from hct_cli.run.resume import RunCompleted

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")

    quiet = as_json and not sys.stderr.isatty()
    try:
        with _terminable(), prepare(score, config, resume=resume, trust=trust, say=say, quiet=quiet) as run:
            latest = resume is not None and resume.run_id is None
            result = _play(run, as_json=as_json, view=view, latest=latest)
    except RunCompleted as done:
        return _completed(done.run_id, as_json)
    return _show(result, as_json)


def _play(run: Run, *, as_json: bool, view: _View, latest: bool) -> RunResult:
    """Perform the prepared run under the conductor or with the plain log; journal its end."""
    run_id = run.run_id
    verb = f"run {run_id}"
    row = run.past.row
    if row is not None:
        picked = "" if not latest else f", the latest run to resume ({_when(row)}; "
        verb = f"resuming run {run_id}{picked or ' ('}segment {run.segment})"
    sys.stderr.write(f"{verb}: journaled; resume with `hct perform --resume {run_id}` after a crash\n")
    plain = not view.tui and (not as_json or sys.stderr.isatty())
    observers: list[Observer] = []
    ensemble = None
    if view.tui:
        from hct_cli.tui.ensemble import Ensemble

        ensemble = Ensemble(run.program, budget_usd=run.budget_usd, run_id=run_id)
        observers.append(ensemble)
    elif plain:
        from hct_cli.cli.plain import PlainLog

        observers.append(PlainLog(len(run.program.stations)))
    else:
        observers.append(_approval_notice(run_id))
    performer = run.cast(observers, terminal=plain and not as_json and sys.stdin.isatty() and sys.stderr.isatty())
    if ensemble is not None:
        result = _conduct(performer, run.desk, ensemble, view.exit_on_finish, run.play, run.session)
    else:
        try:
            result = asyncio.run(_until_stopped(run.play))
        except (KeyboardInterrupt, asyncio.CancelledError):
            sys.stderr.write("interrupted\n")
            result = performer.interrupted()
    if performer.interruption is not None:
        sys.stderr.write(
            f"interrupted: {performer.interruption.rstrip('.')}. Continue with `hct perform --resume {run_id}` "
            "once it is back; nothing journaled is paid again.\n"
        )
    return run.finish(result)


def _show(result: RunResult, as_json: bool) -> int:
    """The run's document (``--json``) or summary, the lines that say how to go on, the exit code."""
    run_id = result.run_id
    data = result.to_json()
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


def _conduct(
    performer: Performer,
    desk: HumanDesk | None,
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


@contextmanager
def _terminable() -> Iterator[None]:
    """SIGTERM stops the run as Ctrl-C does from the start, not only once it plays: a run still
    starting its local model's server stops that server rather than leave it behind."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: the default stands
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
