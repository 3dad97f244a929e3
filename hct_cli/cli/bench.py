"""``hct bench``: measure dispatch policies on a score or a synthetic random DAG."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from hct_cli.bench.measure import COHERENCE, BenchProgress, BenchReport, TrialDone, Variant, run_bench
from hct_cli.engine.dispatch import POLICIES
from hct_cli.errors import BenchError, UsageError
from hct_cli.jsonio import dumps
from hct_cli.program.compile import compile_score

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["bench_command", "progress_lines"]

#: Off a terminal, about this many progress lines at most, however many trials.
PROGRESS_LINES = 20


def _latency(text: str) -> tuple[float, float]:
    low, sep, high = text.partition(":")
    try:
        values = (float(low), float(high if sep else low))
    except ValueError:
        values = (-1.0, -1.0)
    if min(values) < 0 or values[0] > values[1]:
        raise UsageError(f"--latency-ms {text!r} is not LO:HI", hint="Write --latency-ms 10:200 (milliseconds).")
    return values


def bench_command(
    score: Path | None,
    *,
    synthetic: str | None,
    agents: int,
    latency_ms: str,
    compare: str,
    trials: int,
    seed: int,
    emit: Path | None,
    gantt: Path | None,
    as_json: bool,
    time_scale: float = 1.0,
    journal: bool = False,
) -> int:
    if not math.isfinite(time_scale) or time_scale <= 0:
        raise UsageError("--time-scale must be above zero", hint="e.g. --time-scale 0.1 runs ten times faster.")
    for flag, target in (("--emit", emit), ("--gantt", gantt)):
        if target is not None and not target.parent.is_dir():
            raise UsageError(f"{flag} {target}: no directory {target.parent}", hint="Create it or pick another path.")
    asked = [p.strip() for p in compare.split(",") if p.strip()]
    unknown = [p for p in asked if p not in POLICIES and p not in COHERENCE and p not in ("coherence-off", "no-listen")]
    if unknown:
        raise UsageError(
            f"unknown policy {unknown[0]!r}",
            hint=f"--compare takes dispatch policies ({', '.join(POLICIES)}), "
            f"coherence policies ({', '.join(COHERENCE)}, coherence-off) or no-listen.",
        )
    if "no-listen" in asked and len(asked) > 1:
        raise UsageError(
            "compare no-listen on its own",
            hint="hct bench scores/shared-context.yaml --compare no-listen",
        )
    coherent = [p for p in asked if p in COHERENCE or p == "coherence-off"]
    if coherent and len(coherent) != len(asked):
        raise UsageError(
            "compare dispatch policies or coherence policies, not both at once",
            hint="e.g. --compare batch,sequential  or  --compare replay,hold,off",
        )
    if (score is None) == (synthetic is None):
        raise UsageError(
            "give a score or --synthetic random, not both",
            hint="hct bench scores/code-review.yaml --compare batch  or  hct bench --synthetic random --agents 1000",
        )
    if synthetic is not None:
        if synthetic != "random":
            raise UsageError(f"unknown synthetic workload {synthetic!r}", hint="Use --synthetic random.")
        if agents < 1:
            raise UsageError("--agents must be at least 1", hint="Pass --agents 1000.")
        from hct_cli.bench.synthetic import emit_yaml, random_dag

        model = random_dag(agents, seed=seed, latency_ms=_latency(latency_ms))
        if emit is not None:
            try:
                emit_yaml(model, emit)
            except OSError as exc:
                raise BenchError(f"cannot write {emit}: {exc.strerror}", hint="Pick a writable path.") from None
        inputs: dict[str, object] = {}
    else:
        from hct_cli.program.inputs import resolve_inputs
        from hct_cli.program.lint import load_score

        assert score is not None
        model = load_score(score)
        inputs = resolve_inputs(
            model, {}, missing_hint="hct bench takes no --input: give each input a default: in the score."
        )
    program = compile_score(model)
    policies: list[Variant]
    if asked == ["no-listen"]:
        # The run without the listening policy is the baseline the policy is measured against.
        policies = [Variant("no-listen", listening=False), Variant("listen")]
    elif coherent:
        # The score's own policy first (the baseline), then the others asked for.
        names = [model.coherence] + [p for p in asked if p in COHERENCE]
        if "coherence-off" in asked:
            names.append("off")
        policies = [Variant(name, coherence=name) for name in dict.fromkeys(names)]
    else:
        policies = [Variant(name, dispatch=name) for name in dict.fromkeys(["reactive", *asked])]

    with _progress(sys.stderr, trials * len(policies)) as progress:
        report = run_bench(
            program,
            policies=policies,
            trials=trials,
            seed=seed,
            inputs=inputs,
            progress=progress,
            time_scale=time_scale,
            journal=journal,
        )
    if gantt is not None:
        from hct_cli.bench.gantt import gantt_svg

        panels = [(name, fig.last) for name, fig in report.policies.items() if fig.last is not None]
        try:
            gantt.write_text(gantt_svg(program, panels), "utf-8")
        except OSError as exc:
            raise BenchError(f"cannot write {gantt}: {exc.strerror}", hint="Pick a writable path.") from None
    if as_json:
        data = report.to_json()
        if gantt is not None:
            data["gantt"] = str(gantt)
        sys.stdout.write(dumps(data, indent=2) + "\n")
    else:
        _print_table(report)
        if gantt is not None:
            sys.stderr.write(f"wrote {gantt}\n")
    return 0


def _left(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s left"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"


def _line(done: TrialDone) -> str:
    head = f"trial {done.trial}/{done.trials} {done.variant}: {done.makespan_s:.3f} s"
    if done.done == done.total:
        return f"{head} (all {done.total} runs in {done.elapsed_s:.0f} s)"
    return f"{head} ({_left(done.remaining_s)})"


class _Lines:
    """Off a terminal (a log, a pipe, CI): plain lines, thinned so that a long bench prints about
    :data:`PROGRESS_LINES` of them; the last run always gets one."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def started(self, variant: str, trial: int, trials: int) -> None:
        pass

    def finished(self, done: TrialDone) -> None:
        step = math.ceil(done.total / PROGRESS_LINES)
        if done.done % step == 0 or done.done == done.total:
            self.stream.write(_line(done) + "\n")
            self.stream.flush()


class _Live:
    """On a terminal: one rich progress line, redrawn as runs begin and end, gone at the end."""

    def __init__(self, bar: Progress, total: int) -> None:
        self.bar = bar
        self.task = bar.add_task("starting", total=total, left="")

    def started(self, variant: str, trial: int, trials: int) -> None:
        self.bar.update(self.task, description=f"trial {trial}/{trials} {variant}")
        self.bar.refresh()

    def finished(self, done: TrialDone) -> None:
        left = "" if done.done == done.total else _left(done.remaining_s)
        self.bar.update(self.task, completed=done.done, left=left)
        self.bar.refresh()


def progress_lines(console: Console) -> bool:
    """Whether progress goes to ``console`` as plain lines rather than as a live line."""
    return not console.is_terminal or console.is_dumb_terminal


@contextmanager
def _progress(stream: IO[str], total: int) -> Iterator[BenchProgress]:
    from rich.console import Console

    console = Console(file=stream)
    if progress_lines(console):
        yield _Lines(stream)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    # Redrawn only when a run begins or ends: a refresh thread would take the GIL from the run
    # being measured.
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[left]}"),
        console=console,
        auto_refresh=False,
        transient=True,
    ) as bar:
        yield _Live(bar, total)


def _print_table(report: BenchReport) -> None:
    from rich.table import Table

    from hct_cli.cli.console import table_console

    data = report.to_json()
    table = Table(title=f"{report.agents} agents, {report.trials} trials", title_justify="left")
    base = report.baseline
    columns = ["policy", "median s", "min s", "max s", "overhead µs/agent", f"÷ {base}", "cost $"]
    coherence = any(f["stale_reads"] or f["replays"] for f in data["policies"].values())
    if coherence:
        columns += ["stale reads", "replays"]
    cache = any(f["cached_tokens"] for f in data["policies"].values())
    if cache:
        columns += ["input $", f"input ÷ {base}", "cached tokens"]
    for column in columns:
        table.add_column(column, justify="left" if column == "policy" else "right", overflow="fold")
    ratios = data["ratios"]
    for name, figures in data["policies"].items():
        row = [
            name,
            f"{figures['makespan_s']:.4f}",
            f"{figures['min_s']:.4f}",
            f"{figures['max_s']:.4f}",
            f"{figures['overhead_us_per_agent']:.1f}",
            "1.000" if name == base else f"{ratios[f'{name}/{base}']:.3f}",
            f"{figures['cost_usd']:.4f}",
        ]
        if coherence:
            row += [f"{figures['stale_reads']:g}", f"{figures['replays']:g}"]
        if cache:
            input_ratio = "1.000" if name == base else f"{data['input_cost_ratios'][f'{name}/{base}']:.3f}"
            row += [f"{figures['input_cost_usd']:.4f}", input_ratio, f"{figures['cached_tokens']:g}"]
        table.add_row(*row)
    caption = f"critical path {report.critical_path_s:.4f} s"
    if "reactive/critical_path" in data:
        caption += f"; reactive ÷ critical path {data['reactive/critical_path']:.4f}"
    if report.constrained_bound_s is not None:
        caption += f"; resource-constrained bound {report.constrained_bound_s:.4f} s"
    caption += f"; peak RSS {report.peak_rss_mb:.0f} MB"
    table.caption = caption
    table_console().print(table)
