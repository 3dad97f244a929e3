"""Old code against new: every figure of docs/benchmarks.md, measured interleaved in one run.

    python bench/compare.py --old ../old --new . [--rounds 3] [--quick] [--only NAME,...] [--json]

A refactor must not make any figure worse, and on a shared machine the noise between two runs
an hour apart is larger than most regressions. So both trees are measured in the same minutes:
every round runs each benchmark in the old tree, then in the new one, and the table reports the
median over the rounds of each figure, with the range, and the ratio new / old.

Every command runs in its own tree (cwd and ``PYTHONPATH`` set to it, the shared venv's python,
a fresh ``HCT_HOME``), and scripts under ``bench/`` run from that tree, because they import
internals whose module paths differ between the trees. The command lines are the documented
ones, and a round of them takes about half an hour for the two trees (most of it sleeping in
simulated latencies, and the conductor's five trials of three 10,000-agent processes), so three
rounds take about an hour and a half. ``--quick`` cuts trials, seeds and sizes, and runs the
simulations whose time is sleeping at ``--time-scale 0.25``: about 4 minutes a round, 12 for
three. Figures in seconds of those simulations then read a quarter of the documented ones;
ratios, counts and costs stay comparable (``--list`` says what --quick changes in each).

Each round starts with the bare-asyncio floor (``bench/asyncio_floor.py``) of both trees, and
the 10,000-agent benchmark runs the floor right before and after itself, so its overhead is
also reported as a multiple of the floor measured in the same minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

#: The venv every tree runs with (hct's own dependencies; the trees differ only in their code).
DEFAULT_PYTHON = Path("/work/main/.venv/bin/python")
#: What --quick multiplies simulated latencies by, where a command's time is mostly sleeping.
QUICK_TIME_SCALE = 0.25
#: No single command may take longer than this (the full conductor benchmark takes ~5 min).
COMMAND_TIMEOUT_S = 1800.0

Better = Literal["lower", "higher", "same"]


class CommandFailed(Exception):
    """A benchmark's command exited non-zero or printed what could not be parsed."""


@dataclass(frozen=True)
class Figure:
    """One measured number, and which way is better (``same``: a count or cost that must not move)."""

    name: str
    value: float
    better: Better


@dataclass(frozen=True)
class Tree:
    """A checkout of hct to measure, and the interpreter that runs it."""

    label: str
    path: Path
    python: Path

    def env(self, home: Path) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HCT_", "PYTHON"))}
        env["PYTHONPATH"] = str(self.path)
        env["HCT_HOME"] = str(home)
        # bench/cli_startup.py and the conductor look `hct` up on PATH: the venv's entry point.
        env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
        return env

    def commit(self) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(self.path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


@dataclass
class Run:
    """One benchmark in one tree: runs its commands there, each in a fresh HCT_HOME."""

    tree: Tree
    quick: bool
    scratch: Path
    _homes: int = 0

    def home(self) -> Path:
        """A new empty HCT_HOME under this run's scratch directory."""
        self._homes += 1
        path = self.scratch / f"home{self._homes}"
        path.mkdir()
        return path

    def call(self, argv: Sequence[str], home: Path | None = None) -> tuple[str, float]:
        """Run ``python ARGV`` in the tree; its stdout and wall seconds (process start included)."""
        command = [str(self.tree.python), *argv]
        started = time.perf_counter()
        done = subprocess.run(
            command,
            cwd=self.tree.path,
            env=self.tree.env(home or self.home()),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise CommandFailed(f"`{' '.join(argv)}` exited {done.returncode} in {self.tree.path}:\n{tail}")
        return done.stdout, wall

    def json(self, argv: Sequence[str], home: Path | None = None) -> tuple[Any, float]:
        out, wall = self.call(argv, home)
        try:
            return json.loads(out), wall
        except json.JSONDecodeError as error:
            raise CommandFailed(f"`{' '.join(argv)}` printed no JSON: {error}: {out[:300]!r}") from error

    def hct(self, *args: str) -> list[str]:
        return ["-m", "hct_cli", *args]

    def scale(self) -> list[str]:
        """``--time-scale`` for sleeping simulations in quick mode; nothing otherwise."""
        return ["--time-scale", str(QUICK_TIME_SCALE)] if self.quick else []

    def pick(self, full: int, quick: int) -> str:
        return str(quick if self.quick else full)


@dataclass(frozen=True)
class Bench:
    """A documented measurement: its section's command, what --quick changes, and how to take it."""

    name: str
    command: str
    quick: str
    measure: Callable[[Run], list[Figure]]


# -- parsing helpers ----------------------------------------------------------------------------


def _policy_figures(prefix: str, document: Any, policies: Sequence[str]) -> list[Figure]:
    figures = []
    for policy in policies:
        entry = document["policies"][policy]
        figures.append(Figure(f"{prefix}{policy} makespan s", entry["makespan_s"], "lower"))
    return figures


_FLOOR = re.compile(r"median ([0-9.]+) us/node \(min ([0-9.]+), max ([0-9.]+)\)")


def _floor(run: Run) -> float:
    out, _ = run.call(["bench/asyncio_floor.py", "--agents", "10000", "--trials", "5"])
    match = _FLOOR.search(out)
    if match is None:
        raise CommandFailed(f"asyncio_floor.py printed {out!r}")
    return float(match.group(1))


def _synthetic(run: Run, agents: int, trials: str, *extra: str) -> Any:
    argv = ["bench", "--synthetic", "random", "--agents", str(agents), "--latency-ms", "0:0", "--trials", trials]
    document, _ = run.json(run.hct(*argv, "--seed", "0", *extra, "--json"))
    return document


def _overhead(prefix: str, document: Any) -> list[Figure]:
    reactive = document["policies"]["reactive"]
    agents = document["agents"]
    return [
        Figure(f"{prefix} us/agent", reactive["overhead_us_per_agent"], "lower"),
        Figure(f"{prefix} us/agent min", reactive["min_s"] / agents * 1e6, "lower"),
        Figure(f"{prefix} us/agent max", reactive["max_s"] / agents * 1e6, "lower"),
        Figure(f"{prefix} peak RSS MB", document["peak_rss_mb"], "lower"),
    ]


def _tiers(document: Any) -> dict[str, list[Any]]:
    by_tier: dict[str, list[Any]] = {"local": [], "mid": [], "frontier": []}
    for agent in document["agents"].values():
        by_tier.setdefault(agent["tier"], []).append(agent)
    return by_tier


# -- the benchmarks, in the order of docs/benchmarks.md ----------------------------------------


def floor(run: Run) -> list[Figure]:
    return [Figure("asyncio floor us/node (round start)", _floor(run), "lower")]


def code_review(run: Run) -> list[Figure]:
    argv = ["scores/code-review.yaml", "--compare", "batch,sequential", "--trials", run.pick(5, 1), "--seed", "0"]
    gantt = run.scratch / "code-review-gantt.svg"
    doc, _ = run.json(run.hct("bench", *argv, *run.scale(), "--json", "--gantt", str(gantt)))
    path = doc["critical_path_s"]
    sequential = doc["policies"]["sequential"]["makespan_s"]
    return [
        *_policy_figures("", doc, ("reactive", "batch", "sequential")),
        Figure("critical path s", path, "same"),
        Figure("sequential / reactive", doc["ratios"]["sequential/reactive"], "higher"),
        Figure("batch / reactive", doc["ratios"]["batch/reactive"], "higher"),
        Figure("reactive / critical path", doc["reactive/critical_path"], "lower"),
        Figure("bound: sequential / critical path", sequential / path, "same"),
    ]


def random_1k(run: Run) -> list[Figure]:
    argv = ["--synthetic", "random", "--agents", "1000", "--latency-ms", "10:200", "--trials", run.pick(5, 1)]
    doc, _ = run.json(run.hct("bench", *argv, "--seed", "0", "--json"))
    return [
        Figure("makespan s", doc["policies"]["reactive"]["makespan_s"], "lower"),
        Figure("critical path s", doc["critical_path_s"], "same"),
        Figure("makespan / critical path", doc["reactive/critical_path"], "lower"),
    ]


def random_10k(run: Run) -> list[Figure]:
    before = _floor(run)
    doc = _synthetic(run, 10_000, "5")
    after = _floor(run)
    floor_us = (before + after) / 2
    figures = _overhead("10k", doc)
    return [
        Figure("asyncio floor us/node, before 10k", before, "lower"),
        Figure("asyncio floor us/node, after 10k", after, "lower"),
        *figures,
        Figure("10k us/agent / floor", figures[0].value / floor_us, "lower"),
    ]


def random_100k(run: Run) -> list[Figure]:
    return _overhead("100k", _synthetic(run, 100_000, run.pick(3, 1)))


def journal_10k(run: Run) -> list[Figure]:
    return _overhead("journaled 10k", _synthetic(run, 10_000, "5", "--journal"))


def routing(run: Run) -> list[Figure]:
    doc, _ = run.json(run.hct("perform", "scores/mixed-workload.yaml", "--simulate", *run.scale(), "--json"))
    figures = [
        Figure("routed cost $", doc["cost_usd"], "same"),
        Figure("all-frontier cost $", doc["frontier_cost_usd"], "same"),
        Figure("savings", doc["savings"], "same"),
    ]
    for tier, agents in _tiers(doc).items():
        figures.append(Figure(f"{tier} tasks", len(agents), "same"))
        figures.append(Figure(f"{tier} cost $", sum(agent["cost_usd"] for agent in agents), "same"))
    return figures


def budget(run: Run) -> list[Figure]:
    cap = 0.03567
    argv = ["scores/mixed-workload.yaml", "--simulate", "--budget", str(cap), *run.scale(), "--json"]
    doc, _ = run.json(run.hct("perform", *argv))
    agents = [agent for group in _tiers(doc).values() for agent in group]
    return [
        Figure("completed", float(doc["status"] == "completed"), "same"),
        Figure("cost $", doc["cost_usd"], "same"),
        Figure("cost / cap", doc["cost_usd"] / cap, "same"),
        Figure("largest worst case $", max(agent["worst_case_usd"] for agent in agents), "same"),
        *(Figure(f"{tier} tasks", len(group), "same") for tier, group in _tiers(doc).items()),
    ]


def coherence(run: Run) -> list[Figure]:
    argv = ["scores/collab-writing.yaml", "--compare", "replay,hold,off", "--trials", run.pick(5, 1), "--seed", "0"]
    doc, _ = run.json(run.hct("bench", *argv, *run.scale(), "--json"))
    figures = []
    for policy in ("replay", "hold", "off"):
        entry = doc["policies"][policy]
        figures += [
            Figure(f"{policy} makespan s", entry["makespan_s"], "lower"),
            Figure(f"{policy} cost $", entry["cost_usd"], "same"),
            Figure(f"{policy} stale reads", entry["stale_reads"], "same"),
            Figure(f"{policy} replays", entry["replays"], "same"),
        ]
    figures += [Figure(f"{key}", value, "same") for key, value in doc["ratios"].items()]
    return figures


_STARTUP = re.compile(r"^hct (.+): median ([0-9.]+) s \(min ([0-9.]+)", re.MULTILINE)


def cli_startup(run: Run) -> list[Figure]:
    # cli_startup.py times its commands whatever they exit with: check first that they succeed here.
    entry_point = str(run.tree.python.parent / "hct")
    for command in (["lint", "scores/code-review.yaml"], ["--help"]):
        run.call([entry_point, *command])  # the console script, as python runs any script
    out, _ = run.call(["bench/cli_startup.py", "--runs", "5"])
    found = _STARTUP.findall(out)
    if len(found) != 2:
        raise CommandFailed(f"cli_startup.py printed {out!r}")
    figures = []
    for command, median, least in found:
        figures += [
            Figure(f"hct {command} s", float(median), "lower"),
            Figure(f"hct {command} min s", float(least), "lower"),
        ]
    return figures


def local_model(run: Run) -> list[Figure]:
    doc, wall = run.json(run.hct("perform", "tests/resources/scores/local-trio.yaml", "--local", "--json"))
    tokens = [agent["completion_tokens"] for agent in doc["agents"].values()]
    return [
        Figure("wall s (server start included)", wall, "lower"),
        Figure("completed", float(doc["status"] == "completed"), "same"),
        Figure("completion tokens", sum(tokens), "same"),
        Figure("cost $", doc["cost_usd"], "same"),
    ]


def result_cache(run: Run) -> list[Figure]:
    home = run.home()
    score = run.tree.path / "scores" / "code-review.yaml"
    changed = run.scratch / "changed" / "code-review.yaml"
    changed.parent.mkdir()
    text = score.read_text()
    prompt = "Review these hunks for security defects only:"
    if prompt not in text:
        raise CommandFailed(f"security's prompt not found in {score}")
    changed.write_text(text.replace(prompt, "Review these hunks, the worst first, for security defects only:"))
    shutil.copy(score.with_suffix(".diff"), changed.with_suffix(".diff"))
    figures = []
    steps = (("first", str(score)), ("again", str(score)), ("changed", str(changed)))
    for step, path in steps:
        doc, wall = run.json(run.hct("perform", path, "--simulate", "--json"), home)
        figures += [
            Figure(f"{step}: cost $", doc["cost_usd"], "same"),
            Figure(f"{step}: makespan s", doc["makespan_s"], "lower"),
            Figure(f"{step}: paid calls", doc["paid_calls"], "same"),
            Figure(f"{step}: cached calls", doc["cached_calls"], "same"),
            Figure(f"{step}: wall s", wall, "lower"),
        ]
    return figures


def speculation(run: Run) -> list[Figure]:
    seeds = run.pick(9, 3)
    doc, _ = run.json(["bench/speculation.py", "--seeds", seeds, *run.scale()])
    figures = []
    for variant in ("with", "without"):
        entry = doc[variant]
        figures += [
            Figure(f"{variant}: median makespan s", entry["median_makespan_s"], "lower"),
            # What a squashed draft had cost depends on when it was squashed: timing, not a constant.
            Figure(f"{variant}: total cost $", entry["total_cost_usd"], "lower"),
            Figure(f"{variant}: squashes", entry["squashes"], "same"),
            Figure(f"{variant}: squashed cost $", entry["squashed_cost_usd"], "lower"),
        ]
    figures.append(Figure("without / with", doc["without/with (median of per-seed ratios)"], "higher"))
    return figures


def speculation_cli(run: Run) -> list[Figure]:
    score = run.tree.path / "scores" / "research-brief.yaml"
    without = run.scratch / "research-brief-without.yaml"
    text = re.sub(r"^(\s+speculate:)\s*\w+", r"\1 false", score.read_text(), flags=re.MULTILINE)
    without.write_text(re.sub(r"^(\s+attacca:)\s*\w+", r"\1 false", text, flags=re.MULTILINE))
    figures = []
    for variant, path in (("with", score), ("without", without)):
        spans, paths = [], []
        for seed in range(int(run.pick(9, 1))):
            argv = ["perform", str(path), "--simulate", "--seed", str(seed), *run.scale(), "--no-cache", "--json"]
            doc, _ = run.json(run.hct(*argv))
            spans.append(doc["makespan_s"])
            paths.append(doc["critical_path_s"])
        figures += [
            Figure(f"{variant}: median makespan s", statistics.median(spans), "lower"),
            Figure(
                f"{variant}: median critical path / makespan",
                statistics.median(p / s for p, s in zip(paths, spans, strict=True)),
                "same",
            ),
        ]
    return figures


_CONDUCTOR_MODE = re.compile(r"^  (\w+)\s+process\s+([0-9.]+) s\s+makespan ([0-9.]+) s", re.MULTILINE)
_CONDUCTOR_RATIO = re.compile(r"conductor / (\w+): process ([0-9.]+)x, makespan ([0-9.]+)x")


def conductor(run: Run) -> list[Figure]:
    out, _ = run.call(["bench/conductor.py", "--agents", run.pick(10_000, 2_000), "--trials", run.pick(5, 1)])
    figures = []
    for mode, process, span in _CONDUCTOR_MODE.findall(out):
        figures += [
            Figure(f"{mode}: process s", float(process), "lower"),
            Figure(f"{mode}: makespan s", float(span), "lower"),
        ]
    for other, process, span in _CONDUCTOR_RATIO.findall(out):
        figures += [
            Figure(f"conductor / {other}: process", float(process), "lower"),
            Figure(f"conductor / {other}: makespan", float(span), "lower"),
        ]
    if len(figures) != 10:
        raise CommandFailed(f"conductor.py printed {out[-600:]!r}")
    return figures


#: The conductor section's in-process figures name no command; this is the run they describe:
#: a 10,000-agent DAG with no observer, a list as observer, and the conductor's Ensemble, alternating.
#: It takes both trees' module paths (old: hct_cli.compile, hct_cli.synthetic) and both Performer
#: signatures (new: the providers grouped in ``Hands``), so the same probe runs in each tree.
OBSERVERS_PROBE = """
import asyncio, json, statistics, sys
try:
    from hct_cli.program.compile import compile_score
    from hct_cli.bench.synthetic import random_dag
except ImportError:
    from hct_cli.compile import compile_score
    from hct_cli.synthetic import random_dag
from hct_cli.engine.perform import Performer
from hct_cli.providers.simulated import SimulatedProvider
from hct_cli.tui.ensemble import Ensemble
try:
    from hct_cli.engine.options import Hands
except ImportError:
    Hands = None

agents, trials = int(sys.argv[1]), int(sys.argv[2])
program = compile_score(random_dag(agents, seed=0, latency_ms=(0.0, 0.0)))
figures = {"none": [], "list": [], "ensemble": []}
for trial in range(trials):
    for mode in figures:
        provider = SimulatedProvider(trial)
        observers = {"none": [], "list": [[].append], "ensemble": [Ensemble(program, run_id="probe")]}[mode]
        provider_for = lambda spec: provider
        performer = Performer(program, provider_for if Hands is None else Hands(provider_for), observers=observers)
        result = asyncio.run(performer.run())
        assert result.status == "completed", result.status
        figures[mode].append(result.makespan_s / agents * 1e6)
print(json.dumps({mode: statistics.median(values) for mode, values in figures.items()}))
"""


def observers(run: Run) -> list[Figure]:
    doc, _ = run.json(["-c", OBSERVERS_PROBE, "10000", "5"])
    return [
        Figure("no observer us/agent", doc["none"], "lower"),
        Figure("a list as observer us/agent", doc["list"], "lower"),
        Figure("the Ensemble as observer us/agent", doc["ensemble"], "lower"),
        Figure("events: list - none us/agent", doc["list"] - doc["none"], "lower"),
        Figure("Ensemble - list us/agent", doc["ensemble"] - doc["list"], "lower"),
    ]


def distributed(run: Run) -> list[Figure]:
    doc, _ = run.json(["bench/distributed.py", "--trials", run.pick(5, 1)])
    figures = []
    for case in ("in_process", "workers_1", "workers_2", "workers_4"):
        for workload, entry in doc[case].items():
            figures.append(Figure(f"{case} {workload}: ms/agent", entry["per_agent_ms"], "lower"))
            if "ratio" in entry:
                figures.append(Figure(f"{case} {workload}: makespan / critical path", entry["ratio"], "lower"))
    return figures


def listening(run: Run) -> list[Figure]:
    doc, _ = run.json(["bench/listening.py", "--seeds", run.pick(5, 1), "--time-scale", "0.2"])
    figures = []
    for tempo in ("moderato", "allegro", "presto"):
        entry = doc[tempo]
        figures += [
            Figure(f"{tempo}: input cost listen / no-listen", entry["input_cost_listen/no-listen"], "same"),
            Figure(f"{tempo}: input cost listen / uncached", entry["input_cost_listen/uncached"], "same"),
            Figure(f"{tempo}: makespan growth s", entry["makespan_growth_s"], "lower"),
            Figure(f"{tempo}: makespan growth / TTFT", entry["makespan_growth/ttft"], "lower"),
            Figure(f"{tempo}: leader TTFT s", entry["leader_ttft_s"], "same"),
        ]
    return figures


def listening_cli(run: Run) -> list[Figure]:
    argv = ["scores/shared-context.yaml", "--compare", "no-listen", "--trials", run.pick(5, 1), "--time-scale", "0.2"]
    doc, _ = run.json(run.hct("bench", *argv, "--json"))
    return [
        Figure("input cost listen / no-listen", doc["input_cost_ratios"]["listen/no-listen"], "same"),
        Figure("makespan listen / no-listen", doc["ratios"]["listen/no-listen"], "lower"),
        *_policy_figures("", doc, ("listen", "no-listen")),
        Figure("tokens read from the cache", doc["policies"]["listen"]["cached_tokens"], "same"),
    ]


BENCHES = (
    Bench("floor", "python bench/asyncio_floor.py --agents 10000 --trials 5 (start of every round)", "", floor),
    Bench(
        "code-review",
        "hct bench scores/code-review.yaml --compare batch,sequential --trials 5 --seed 0 --json --gantt FILE",
        "--trials 1 --time-scale 0.25",
        code_review,
    ),
    Bench(
        "random-1k",
        "hct bench --synthetic random --agents 1000 --latency-ms 10:200 --trials 5 --seed 0 --json",
        "--trials 1",
        random_1k,
    ),
    Bench(
        "random-10k",
        "asyncio_floor.py; hct bench --synthetic random --agents 10000 --latency-ms 0:0 --trials 5 --seed 0 --json; "
        "asyncio_floor.py",
        "",
        random_10k,
    ),
    Bench(
        "random-100k",
        "hct bench --synthetic random --agents 100000 --latency-ms 0:0 --trials 3 --seed 0 --json",
        "--trials 1",
        random_100k,
    ),
    Bench(
        "journal-10k",
        "hct bench --synthetic random --agents 10000 --latency-ms 0:0 --trials 5 --seed 0 --journal --json",
        "",
        journal_10k,
    ),
    Bench("routing", "hct perform scores/mixed-workload.yaml --simulate --json", "--time-scale 0.25", routing),
    Bench(
        "budget",
        "hct perform scores/mixed-workload.yaml --simulate --budget 0.03567 --json",
        "--time-scale 0.25",
        budget,
    ),
    Bench(
        "coherence",
        "hct bench scores/collab-writing.yaml --compare replay,hold,off --trials 5 --seed 0 --json",
        "--trials 1 --time-scale 0.25",
        coherence,
    ),
    Bench("cli-startup", "python bench/cli_startup.py --runs 5", "", cli_startup),
    Bench("local-model", "hct perform tests/resources/scores/local-trio.yaml --local --json", "", local_model),
    Bench(
        "result-cache",
        "hct perform scores/code-review.yaml --simulate --json, again, then with security's prompt changed "
        "(one HCT_HOME)",
        "",
        result_cache,
    ),
    Bench(
        "speculation",
        "python bench/speculation.py --seeds 9",
        "--seeds 3 --time-scale 0.25",
        speculation,
    ),
    Bench(
        "speculation-cli",
        "hct perform scores/research-brief.yaml --simulate --seed S --no-cache --json, S = 0..8, with and "
        "without speculate/attacca",
        "seed 0 only, --time-scale 0.25",
        speculation_cli,
    ),
    Bench("conductor", "python bench/conductor.py --agents 10000 --trials 5", "--agents 2000 --trials 1", conductor),
    Bench(
        "observers",
        "no command in the doc: Performer on a 10,000-agent DAG with no observer, a list, the Ensemble "
        "(OBSERVERS_PROBE, 5 trials)",
        "",
        observers,
    ),
    Bench("distributed", "python bench/distributed.py --trials 5", "--trials 1", distributed),
    Bench("listening", "python bench/listening.py --seeds 5 --time-scale 0.2", "--seeds 1", listening),
    Bench(
        "listening-cli",
        "hct bench scores/shared-context.yaml --compare no-listen --trials 5 --time-scale 0.2 --json",
        "--trials 1",
        listening_cli,
    ),
)


# -- running and reporting ----------------------------------------------------------------------


@dataclass
class Measured:
    """Every value of one run: per benchmark, per tree, one entry per round."""

    rounds: list[dict[str, dict[str, list[Figure] | str]]] = field(default_factory=list)
    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def check_tree(tree: Tree) -> None:
    """Refuse a tree whose ``hct_cli`` would not be the one imported (an installed copy winning)."""
    probe = "import hct_cli, pathlib; print(pathlib.Path(hct_cli.__file__).resolve().parent.parent)"
    with tempfile.TemporaryDirectory() as home:
        done = subprocess.run(
            [str(tree.python), "-c", probe],
            cwd=tree.path,
            env=tree.env(Path(home)),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0 or Path(done.stdout.strip()) != tree.path:
        sys.exit(
            f"{tree.label}: hct_cli is imported from {done.stdout.strip() or done.stderr.strip()}, not {tree.path}"
        )


def measure_all(trees: Sequence[Tree], benches: Sequence[Bench], rounds: int, quick: bool) -> Measured:
    measured = Measured()
    total = rounds * len(benches) * len(trees)
    count = 0
    started = time.perf_counter()
    for number in range(rounds):
        this_round: dict[str, dict[str, list[Figure] | str]] = {}
        for bench in benches:
            for tree in trees:
                count += 1
                with tempfile.TemporaryDirectory(prefix=f"hct-compare-{tree.label}-") as scratch:
                    run = Run(tree, quick, Path(scratch))
                    began = time.perf_counter()
                    outcome: list[Figure] | str
                    try:
                        outcome = bench.measure(run)
                    except (CommandFailed, subprocess.TimeoutExpired, KeyError, ValueError, TypeError) as error:
                        outcome = f"{type(error).__name__}: {error}"
                    seconds = time.perf_counter() - began
                this_round.setdefault(bench.name, {})[tree.label] = outcome
                measured.seconds.setdefault(bench.name, {}).setdefault(tree.label, []).append(seconds)
                status = "FAILED" if isinstance(outcome, str) else "ok"
                elapsed = time.perf_counter() - started
                print(
                    f"[{count}/{total}] round {number + 1} {bench.name} {tree.label}: {status} in {seconds:.1f} s "
                    f"({elapsed / 60:.1f} min so far)",
                    file=sys.stderr,
                    flush=True,
                )
                if isinstance(outcome, str):
                    print(outcome, file=sys.stderr, flush=True)
        measured.rounds.append(this_round)
    return measured


def values(measured: Measured, bench: str, tree: str) -> dict[str, list[float]]:
    """Figure name -> its value in every round that measured it (derived figures included)."""
    found: dict[str, list[float]] = {}
    for this_round in measured.rounds:
        outcome = this_round.get(bench, {}).get(tree)
        if isinstance(outcome, list):
            for figure in outcome:
                found.setdefault(figure.name, []).append(figure.value)
        if bench == "random-100k":  # the documented 100k / 10k ratio, within the same round
            big, small = this_round.get(bench, {}).get(tree), this_round.get("random-10k", {}).get(tree)
            if isinstance(big, list) and isinstance(small, list):
                ratio = _named(big, "100k us/agent") / _named(small, "10k us/agent")
                found.setdefault("100k / 10k us/agent", []).append(ratio)
    return found


def _named(figures: list[Figure], name: str) -> float:
    return next(figure.value for figure in figures if figure.name == name)


def directions(measured: Measured) -> dict[tuple[str, str], Better]:
    found: dict[tuple[str, str], Better] = {}
    for this_round in measured.rounds:
        for bench, outcomes in this_round.items():
            for outcome in outcomes.values():
                if isinstance(outcome, list):
                    for figure in outcome:
                        found[bench, figure.name] = figure.better
    return found


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.4g}" if magnitude < 100 else f"{value:.1f}"
    return f"{value:.4g}"


def _range(points: list[float]) -> str:
    return f"{_fmt(min(points))}–{_fmt(max(points))}" if len(points) > 1 else ""


def _ratio(old: float | None, new: float | None) -> float | None:
    """new / old, or None where it means nothing (a zero, or jitter of either sign around zero)."""
    if old is None or new is None or old == 0 or (old < 0) != (new < 0):
        return None
    return new / old


def summary(measured: Measured, benches: Sequence[Bench], trees: Sequence[Tree]) -> dict[str, Any]:
    better = directions(measured)
    report: dict[str, Any] = {}
    for bench in benches:
        rows: dict[str, Any] = {}
        per_tree = {tree.label: values(measured, bench.name, tree.label) for tree in trees}
        names = list(dict.fromkeys(name for found in per_tree.values() for name in found))
        for name in names:
            row: dict[str, Any] = {"better": better.get((bench.name, name), "lower")}
            for tree in trees:
                points = per_tree[tree.label].get(name, [])
                row[tree.label] = {"median": statistics.median(points) if points else None, "each": points}
            old, new = row["old"]["median"], row["new"]["median"]
            row["new/old"] = _ratio(old, new)
            rows[name] = row
        failures = {
            tree.label: [
                r[bench.name][tree.label] for r in measured.rounds if isinstance(r[bench.name][tree.label], str)
            ]
            for tree in trees
        }
        seconds = {label: statistics.mean(each) for label, each in measured.seconds[bench.name].items()}
        report[bench.name] = {
            "command": bench.command,
            "quick": bench.quick,
            "figures": rows,
            "failures": failures,
            "seconds": seconds,
        }
    return report


def markdown(report: dict[str, Any], header: dict[str, Any]) -> str:
    lines = [
        f"# Old against new, {header['date']}",
        "",
        *(f"- {label}: `{header[label]['path']}` at {_commit_line(header[label])}" for label in ("old", "new")),
        f"- {header['rounds']} rounds, interleaved old then new per benchmark; "
        f"{'quick mode' if header['quick'] else 'the documented commands'}; medians over the rounds",
        f"- machine: {header['machine']}; load average {header['load_before']} before, {header['load_after']} after",
        f"- took {header['minutes']:.1f} min ({header['minutes'] / header['rounds']:.1f} min a round)",
        "",
    ]
    floors: dict[str, list[float]] = {"old": [], "new": []}
    for bench in ("floor", "random-10k"):
        if bench in report:
            for label in floors:
                for name, row in report[bench]["figures"].items():
                    if name.startswith("asyncio floor"):
                        floors[label] += row[label]["each"]
    if any(floors.values()):
        for label, points in floors.items():
            shown = ", ".join(f"{p:.2f}" for p in points)
            lines.append(f"- asyncio floor, {label} tree's script (round start, before and after 10k): {shown} us/node")
    if "random-10k" in report:
        ratio = report["random-10k"]["figures"].get("10k us/agent / floor")
        if ratio is not None:
            lines.append(
                f"- 10k-agent overhead / floor (same minutes): old {_fmt(ratio['old']['median'] or 0)}×, "
                f"new {_fmt(ratio['new']['median'] or 0)}×"
            )
    lines += [
        "",
        "| benchmark | figure | better | old | new | new/old | old range | new range |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bench, entry in report.items():
        for name, row in entry["figures"].items():
            old, new = row["old"]["median"], row["new"]["median"]
            ratio = _ratio(old, new)
            lines.append(
                f"| {bench} | {name} | {row['better']} | {'—' if old is None else _fmt(old)} | "
                f"{'—' if new is None else _fmt(new)} | {'—' if ratio is None else f'{ratio:.3f}'} | "
                f"{_range(row['old']['each'])} | {_range(row['new']['each'])} |"
            )
        for label, failures in entry["failures"].items():
            for failure in failures:
                first = failure.splitlines()[0] if failure else ""
                lines.append(f"| {bench} | **FAILED** in {label} | | | | | {first} | |")
    lines += ["", "| benchmark | command | --quick changes | s per run (old / new) |", "|---|---|---|---|"]
    for bench, entry in report.items():
        seconds = entry["seconds"]
        lines.append(
            f"| {bench} | `{entry['command']}` | {entry['quick'] or 'nothing'} | "
            f"{seconds.get('old', 0):.1f} / {seconds.get('new', 0):.1f} |"
        )
    return "\n".join(lines)


def _commit_line(tree: dict[str, str]) -> str:
    after = tree.get("commit_after", tree["commit"])
    if after == tree["commit"]:
        return tree["commit"]
    return f"{tree['commit']} at the start, **{after} at the end: the tree changed during the run**"


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, help="the tree before the change")
    parser.add_argument("--new", type=Path, help="the tree after it")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer trials and seeds, smaller sizes (see QUICK)")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME[,NAME]", help="run only these benchmarks (repeatable)"
    )
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON, help="the interpreter both trees run with")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of markdown")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and their commands")
    parser.add_argument("--render", type=Path, metavar="FILE", help="print the markdown of a saved --json document")
    args = parser.parse_args()
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        print(markdown(saved["benchmarks"], saved["header"]))
        return 0
    if args.list:
        for bench in BENCHES:
            print(f"{bench.name:<16} {bench.command}\n{'':<16} --quick: {bench.quick or 'nothing'}")
        return 0
    if args.old is None or args.new is None:
        parser.error("--old and --new are required")
    wanted = {name for item in args.only for name in item.split(",") if name}
    unknown = wanted - {bench.name for bench in BENCHES}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; --list shows them")
    benches = [bench for bench in BENCHES if not wanted or bench.name in wanted or bench.name == "floor"]
    trees = [Tree("old", args.old.resolve(), args.python), Tree("new", args.new.resolve(), args.python)]
    for tree in trees:
        check_tree(tree)
    header: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "old": {"path": str(trees[0].path), "commit": trees[0].commit()},
        "new": {"path": str(trees[1].path), "commit": trees[1].commit()},
        "rounds": args.rounds,
        "quick": args.quick,
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()} ({args.python})",
        "load_before": load_average(),
    }
    started = time.perf_counter()
    measured = measure_all(trees, benches, args.rounds, args.quick)
    header["minutes"] = (time.perf_counter() - started) / 60
    header["load_after"] = load_average()
    for tree in trees:
        header[tree.label]["commit_after"] = tree.commit()
        if header[tree.label]["commit_after"] != header[tree.label]["commit"]:
            print(f"warning: {tree.path} changed during the run", file=sys.stderr)
    report = summary(measured, benches, trees)
    if args.json:
        print(json.dumps({"header": header, "benchmarks": report}, indent=2))
    else:
        print(markdown(report, header))
    failed = any(failures for entry in report.values() for failures in entry["failures"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
