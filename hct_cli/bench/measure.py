"""The harness behind ``hct bench``: run one program under several dispatch policies.

Every policy sees the same stations, the same simulated provider and the same seed per trial,
so the latencies it draws are identical and the difference in makespan is the policy's alone.
Overhead per agent is the makespan beyond the policy's own ideal under those latencies
(critical path for reactive, the sum of superstep maxima for batch, the sum of latencies for
sequential), divided by the number of agents.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import resource
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hct_cli.engine.result import RunResult
from hct_cli.errors import BenchError
from hct_cli.program.compile import Program
from hct_cli.run.assemble import Run, prepare
from hct_cli.run.config import Tuning
from hct_cli.store.journal import RunConfig

__all__ = [
    "COHERENCE",
    "BenchProgress",
    "BenchReport",
    "PolicyFigures",
    "TrialDone",
    "Variant",
    "estimate_remaining",
    "ideal_makespan",
    "run_bench",
]

#: Coherence policies ``--compare`` accepts besides the dispatch policies.
COHERENCE = ("replay", "hold", "off")


@dataclass(frozen=True)
class Variant:
    """One way of running the program: a dispatch policy, and a coherence policy when compared."""

    name: str
    dispatch: str = "reactive"
    coherence: str | None = None  # None: the score's own
    listening: bool = True


@dataclass(frozen=True)
class TrialDone:
    """One trial of one variant has ended: what progress shows."""

    variant: str
    trial: int  # from 1
    trials: int
    makespan_s: float
    done: int  # runs ended so far, this one included, out of ``total``
    total: int
    elapsed_s: float  # wall time since the bench began
    remaining_s: float  # wall time the runs still to come should take


class BenchProgress(Protocol):
    """Told as each run of the bench begins and ends."""

    def started(self, variant: str, trial: int, trials: int) -> None: ...

    def finished(self, done: TrialDone) -> None: ...


def estimate_remaining(walls: Mapping[str, Sequence[float]], pending: Iterable[str]) -> float:
    """The wall time the ``pending`` runs should take, from the runs done so far.

    A variant's runs are timed by its own mean, since policies differ by several times (sequential
    against reactive); a variant not yet run is timed by the mean of every run so far.
    """
    every = [wall for seconds in walls.values() for wall in seconds]
    if not every:
        return 0.0
    overall = statistics.fmean(every)
    means = {name: statistics.fmean(seconds) for name, seconds in walls.items() if seconds}
    return sum(means.get(name, overall) for name in pending)


@dataclass
class PolicyFigures:
    makespans: list[float] = field(default_factory=list)
    overheads_us: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    stale_reads: list[int] = field(default_factory=list)
    replays: list[int] = field(default_factory=list)
    input_costs: list[float] = field(default_factory=list)
    cached_tokens: list[int] = field(default_factory=list)
    last: RunResult | None = None

    def to_json(self) -> dict[str, float]:
        return {
            "makespan_s": round(statistics.median(self.makespans), 6),
            "min_s": round(min(self.makespans), 6),
            "max_s": round(max(self.makespans), 6),
            "overhead_us_per_agent": round(statistics.median(self.overheads_us), 3),
            "cost_usd": round(statistics.median(self.costs), 8),
            "stale_reads": statistics.median(self.stale_reads),
            "replays": statistics.median(self.replays),
            "input_cost_usd": round(statistics.median(self.input_costs), 8),
            "cached_tokens": statistics.median(self.cached_tokens),
        }


@dataclass
class BenchReport:
    agents: int
    trials: int
    critical_paths: list[float]
    policies: dict[str, PolicyFigures]
    constrained_bound_s: float | None = None
    peak_rss_mb: float = 0.0
    journal: bool = False  # every trial was journaled

    @property
    def critical_path_s(self) -> float:
        return statistics.median(self.critical_paths)

    @property
    def baseline(self) -> str:
        """The variant the others are compared with: the first one run."""
        return next(iter(self.policies))

    def ratios(self) -> dict[str, float]:
        base = self.baseline
        reference = statistics.median(self.policies[base].makespans)
        return {
            f"{name}/{base}": round(statistics.median(p.makespans) / reference, 4) if reference > 0 else 0.0
            for name, p in self.policies.items()
            if name != base
        }

    def input_cost_ratios(self) -> dict[str, float]:
        base = self.baseline
        reference = statistics.median(self.policies[base].input_costs)
        return {
            f"{name}/{base}": round(statistics.median(p.input_costs) / reference, 4) if reference > 0 else 0.0
            for name, p in self.policies.items()
            if name != base
        }

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "agents": self.agents,
            "trials": self.trials,
            "critical_path_s": round(self.critical_path_s, 6),
            "policies": {name: p.to_json() for name, p in self.policies.items()},
            "ratios": self.ratios(),
            "input_cost_ratios": self.input_cost_ratios(),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "journal": self.journal,
        }
        if "reactive" in self.policies and self.critical_path_s > 0:
            data["reactive/critical_path"] = round(
                statistics.median(self.policies["reactive"].makespans) / self.critical_path_s, 4
            )
        if self.constrained_bound_s is not None:
            data["resource_constrained_bound_s"] = round(self.constrained_bound_s, 6)
        return data


def ideal_makespan(program: Program, latency: Mapping[str, float], policy: str) -> float:
    """The makespan ``policy`` would reach with zero overhead, given each station's latency."""
    stations = program.stations
    if policy == "sequential":
        return sum(latency.values())
    if policy == "reactive":
        finish: dict[str, float] = {}
        for name in program.order:
            start = max((finish[t] for t in stations[name].tags), default=0.0)
            finish[name] = start + latency.get(name, 0.0)
        return max(finish.values(), default=0.0)
    # batch: supersteps of the frozen ready set
    waiting = {name: len(spec.tags) for name, spec in stations.items()}
    ready = [name for name in program.order if waiting[name] == 0]
    total = 0.0
    while ready:
        total += max(latency.get(name, 0.0) for name in ready)
        following: list[str] = []
        for name in ready:
            for dependent in stations[name].dependents:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    following.append(dependent)
        ready = following
    return total


def _constrained_bound(program: Program, latency: Mapping[str, float]) -> float | None:
    """List-scheduling makespan under the tiers' concurrency limits (None when unlimited)."""
    limits = {tier: spec.concurrency for tier, spec in program.tiers.items() if spec.concurrency}
    if not limits:
        return None
    stations = program.stations
    waiting = {name: len(spec.tags) for name, spec in stations.items()}
    ready: list[tuple[tuple[int, float, int], str]] = []
    for name in program.roots:
        heapq.heappush(ready, (stations[name].priority, name))
    busy = dict.fromkeys(limits, 0)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        blocked = []
        while ready:
            item = heapq.heappop(ready)
            tier = stations[item[1]].route.tier
            if tier in limits and busy[tier] >= (limits[tier] or 0):
                blocked.append(item)
                continue
            if tier in limits:
                busy[tier] += 1
            heapq.heappush(running, (now + latency.get(item[1], 0.0), item[1]))
        for item in blocked:
            heapq.heappush(ready, item)
        now, name = heapq.heappop(running)
        tier = stations[name].route.tier
        if tier in limits:
            busy[tier] -= 1
        for dependent in stations[name].dependents:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, (stations[dependent].priority, dependent))
    return now


def _scratch_home(stack: ExitStack) -> Path:
    """A scratch home for a journaled trial, so benchmarks stay out of the run history."""
    return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hct-bench-")))


async def _played(run: Run) -> RunResult:
    """Play ``run`` once its tool servers are up and listed: starting a server (and, the first
    time, loading the MCP SDK) is neither a model's latency nor a tool's, nor the engine's
    scheduling, so it stays off the clock, as the price map and the templates do."""
    box = run.calls.tools
    if box is not None:
        try:
            for spec in run.program.stations.values():
                if spec.agent.tools:
                    await box.tools_for(spec.agent)
        except BaseException:
            await box.aclose()  # play() would have stopped them: no server outlives the trial
            raise
    return await run.play()


def run_bench(
    program: Program,
    *,
    policies: Sequence[str | Variant] = ("reactive",),
    trials: int = 5,
    seed: int = 0,
    inputs: Mapping[str, Any] | None = None,
    progress: BenchProgress | None = None,
    time_scale: float = 1.0,
    journal: bool = False,
) -> BenchReport:
    """Run ``trials`` trials of every policy; trial ``t`` uses seed ``seed + t`` for all of them.

    Every trial is a run of the library (:func:`hct_cli.run.assemble.prepare`), simulated, with
    the engine alone measured (:class:`~hct_cli.run.config.Tuning`). With ``journal``, every trial
    is journaled as ``hct perform`` journals a run (SQLite WAL, group commit), into a scratch
    home so benchmarks stay out of the run history.
    """
    if trials < 1:
        raise BenchError("--trials must be at least 1", hint="Pass --trials 5 for a median of five.")
    variants = [p if isinstance(p, Variant) else Variant(p, dispatch=p) for p in policies]
    report = BenchReport(
        len(program.stations), trials, [], {v.name: PolicyFigures() for v in variants}, journal=journal
    )
    n = max(1, len(program.stations))
    walls: dict[str, list[float]] = {v.name: [] for v in variants}
    began = time.perf_counter()
    for trial in range(trials):
        for position, variant in enumerate(variants):
            policy = variant.dispatch
            if progress is not None:
                progress.started(variant.name, trial + 1, trials)
            run_began = time.perf_counter()
            config = RunConfig(
                inputs=dict(inputs or {}),
                seed=seed + trial,
                simulate=True,
                time_scale=time_scale,
                dispatch=policy,
                cache=False,
            )
            tuning = Tuning(coherence=variant.coherence, listening=variant.listening, engine_only=True)
            with ExitStack() as stack:
                home = _scratch_home(stack) if journal else None
                run = stack.enter_context(prepare(program, config, journal=journal, home=home, tuning=tuning))
                run.cast()
                gc.collect()  # start every trial from the same heap; collections during the run count
                result = run.finish(asyncio.run(_played(run)))
            if result.status != "completed":
                raise BenchError(
                    f"{variant.name} run ended {result.status}",
                    hint="Benchmark a score that completes under --simulate.",
                )
            latency = {name: r.latency_s for name, r in result.agents.items()}
            ideal = ideal_makespan(program, latency, policy)
            figures = report.policies[variant.name]
            figures.makespans.append(result.makespan_s)
            figures.overheads_us.append(max(0.0, result.makespan_s - ideal) / n * 1e6)
            figures.costs.append(result.cost_usd)
            figures.stale_reads.append(result.stale_reads)
            figures.replays.append(result.replays)
            figures.input_costs.append(result.input_cost_usd)
            figures.cached_tokens.append(sum(r.cached_tokens for r in result.agents.values()))
            figures.last = result
            if variant is variants[0]:
                report.critical_paths.append(ideal_makespan(program, latency, "reactive"))
                bound = _constrained_bound(program, latency)
                if bound is not None:
                    report.constrained_bound_s = bound
            if progress is not None:
                walls[variant.name].append(time.perf_counter() - run_began)
                pending = [v.name for v in variants[position + 1 :]] + [v.name for v in variants] * (trials - trial - 1)
                progress.finished(
                    TrialDone(
                        variant.name,
                        trial + 1,
                        trials,
                        result.makespan_s,
                        done=trial * len(variants) + position + 1,
                        total=trials * len(variants),
                        elapsed_s=time.perf_counter() - began,
                        remaining_s=estimate_remaining(walls, pending),
                    )
                )
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return report
