"""The bench harness tells its progress as each run begins and ends, with an estimate of the
time left that comes from the runs done so far."""

from __future__ import annotations

from pathlib import Path

import pytest

from hct_cli.bench.measure import TrialDone, estimate_remaining, run_bench
from hct_cli.program.compile import compile_score
from hct_cli.program.lint import load_score

pytestmark = pytest.mark.timeout(60)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int] | TrialDone] = []

    def started(self, variant: str, trial: int, trials: int) -> None:
        assert trials == 3
        self.events.append(("started", variant, trial))

    def finished(self, done: TrialDone) -> None:
        self.events.append(done)


def test_every_run_is_announced_then_reported_in_order(resources: Path) -> None:
    program = compile_score(load_score(resources / "scores" / "tier-chain.yaml"))
    recorder = Recorder()
    report = run_bench(program, policies=("reactive", "batch"), trials=3, time_scale=0.02, progress=recorder)

    order = [(variant, trial) for trial in (1, 2, 3) for variant in ("reactive", "batch")]
    assert recorder.events[0::2] == [("started", variant, trial) for variant, trial in order]
    done = [event for event in recorder.events[1::2] if isinstance(event, TrialDone)]
    assert [(d.variant, d.trial) for d in done] == order
    assert [d.done for d in done] == list(range(1, 7)) and {d.total for d in done} == {6}
    assert [d.makespan_s for d in done if d.variant == "batch"] == report.policies["batch"].makespans
    assert done[-1].remaining_s == 0.0 and all(d.remaining_s > 0 for d in done[:-1])
    assert [d.elapsed_s for d in done] == sorted(d.elapsed_s for d in done)


def test_the_estimate_times_each_variant_by_its_own_runs() -> None:
    walls = {"reactive": [1.0, 3.0], "sequential": [10.0]}
    assert estimate_remaining(walls, ["reactive", "sequential", "sequential"]) == pytest.approx(2.0 + 20.0)


def test_a_variant_not_yet_run_is_timed_by_the_mean_of_every_run() -> None:
    walls = {"reactive": [1.0, 2.0], "batch": [6.0], "sequential": []}
    assert estimate_remaining(walls, ["sequential", "batch"]) == pytest.approx(3.0 + 6.0)


def test_nothing_run_yet_or_nothing_left_estimates_nothing() -> None:
    assert estimate_remaining({"reactive": []}, ["reactive"]) == 0.0
    assert estimate_remaining({"reactive": [2.0]}, []) == 0.0
