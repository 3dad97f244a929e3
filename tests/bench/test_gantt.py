"""The SVG Gantt of ``hct bench --gantt``: one panel per policy on a shared time axis, bars
coloured by tier, the critical path outlined; valid XML whatever the agents are called."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hct_cli.bench.gantt import CRITICAL_STROKE, NO_TIER, TIER_COLOURS, gantt_svg, time_ticks
from hct_cli.bench.measure import run_bench
from hct_cli.engine.result import RunResult
from hct_cli.program.compile import Program, compile_score
from hct_cli.program.lint import load_score
from hct_cli.score.model import build_score

pytestmark = pytest.mark.timeout(60)
SVG = "{http://www.w3.org/2000/svg}"
POLICIES = ("reactive", "batch", "sequential")


def tier_chain(resources: Path) -> Program:
    # fetch (local) -> deep (frontier) -> merge (local) is the longest chain, 600 ms.
    return compile_score(load_score(resources / "scores" / "tier-chain.yaml"))


def runs_of(program: Program, policies: tuple[str, ...] = POLICIES) -> list[tuple[str, RunResult]]:
    report = run_bench(program, policies=policies, trials=1, time_scale=0.02)
    return [(name, figures.last) for name, figures in report.policies.items() if figures.last is not None]


def panels(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(f"{SVG}g[@class='panel']")


def bars(panel: ET.Element) -> list[ET.Element]:
    return [rect for rect in panel.iter(f"{SVG}rect") if "bar" in rect.get("class", "").split()]


def agent_of(bar: ET.Element) -> str:
    """The agent a bar draws (every bar names one)."""
    agent = bar.get("data-agent")
    assert agent is not None, "a bar without data-agent"
    return agent


def test_one_panel_per_policy_with_its_title_and_makespan(resources: Path) -> None:
    runs = runs_of(tier_chain(resources))
    drawn = panels(gantt_svg(tier_chain(resources), runs))
    assert [panel.get("data-policy") for panel in drawn] == list(POLICIES)
    for panel, (name, run) in zip(drawn, runs, strict=True):
        title = panel.find(f"{SVG}text[@class='panel-title']")
        assert title is not None
        assert "".join(title.itertext()).startswith(f"{name}: makespan {run.makespan_s:.3f} s")
        assert {bar.get("data-agent") for bar in bars(panel)} == set(run.agents)


def test_every_panel_has_a_time_axis_labelled_in_seconds_on_one_scale(resources: Path) -> None:
    program = tier_chain(resources)
    runs = runs_of(program)
    drawn = panels(gantt_svg(program, runs))
    longest = max(run.makespan_s for _, run in runs)
    axes = []
    for panel in drawn:
        labels = [(float(t.get("x", "0")), t.text or "") for t in panel.iter(f"{SVG}text") if t.get("class") == "tick"]
        assert len(labels) >= 3
        assert all(re.fullmatch(r"\d+(\.\d+)? s", text) for _, text in labels)
        seconds = [float(text[:-2]) for _, text in labels]
        assert seconds[0] == 0 and seconds == sorted(seconds) and seconds[-1] >= longest
        axes.append(labels)
    assert all(axis == axes[0] for axis in axes)  # the same ticks at the same places in every panel


def test_bars_are_coloured_by_their_tier(resources: Path) -> None:
    program = tier_chain(resources)
    runs = runs_of(program, ("reactive",))
    (panel,) = panels(gantt_svg(program, runs))
    tiers = {bar.get("data-agent"): (bar.get("data-tier"), bar.get("fill")) for bar in bars(panel)}
    assert {tier for tier, _ in tiers.values()} == {"local", "mid", "frontier"}
    for name, (tier, fill) in tiers.items():
        assert tier == runs[0][1].agents[str(name)].tier
        assert fill == TIER_COLOURS[str(tier)]
    legend = ET.fromstring(gantt_svg(program, runs)).find(f"{SVG}g[@class='legend']")
    assert legend is not None
    keys = {rect.get("data-key"): rect.get("fill") for rect in legend.iter(f"{SVG}rect")}
    assert all(keys[tier] == colour for tier, colour in TIER_COLOURS.items())


def test_the_critical_paths_bars_and_only_those_are_outlined(resources: Path) -> None:
    program = tier_chain(resources)
    for panel in panels(gantt_svg(program, runs_of(program))):
        outlined = [agent_of(bar) for bar in bars(panel) if bar.get("stroke") == CRITICAL_STROKE]
        marked = [agent_of(bar) for bar in bars(panel) if "critical" in bar.get("class", "").split()]
        assert sorted(outlined) == sorted(marked) == ["deep", "fetch", "merge"], panel.get("data-policy")


def test_names_that_are_markup_stay_text() -> None:
    names = ["<parse>", "a & b", 'say "hi"']
    agents = {
        names[0]: {"prompt": "p", "simulate": {"latency_ms": 100}},
        names[1]: {"prompt": "q", "cues": [names[0]], "simulate": {"latency_ms": 100}},
        names[2]: {"prompt": "r", "simulate": {"latency_ms": 50}},
    }
    program = compile_score(build_score({"name": "<b>&</b>", "agents": agents}))
    root = ET.fromstring(gantt_svg(program, runs_of(program, ("reactive", "batch"))))
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert set(names) <= texts and "<b>&</b>" in texts
    for panel in root.findall(f"{SVG}g[@class='panel']"):
        assert {bar.get("data-agent") for bar in bars(panel)} == set(names)
        assert {bar.get("fill") for bar in bars(panel)} <= {*TIER_COLOURS.values(), NO_TIER}


def test_past_the_row_limit_the_critical_path_is_still_drawn(resources: Path) -> None:
    agents: dict[str, dict[str, object]] = {f"w{i}": {"prompt": "w", "simulate": {"latency_ms": 10}} for i in range(30)}
    agents["head"] = {"prompt": "h", "simulate": {"latency_ms": 100}}
    agents["tail"] = {"prompt": "t", "cues": ["head"], "simulate": {"latency_ms": 100}}
    program = compile_score(build_score({"name": "wide", "agents": agents}))
    (panel,) = panels(gantt_svg(program, runs_of(program, ("reactive",)), max_rows=8))
    drawn = bars(panel)
    assert len(drawn) == 8
    assert sorted(agent_of(bar) for bar in drawn if "critical" in bar.get("class", "")) == ["head", "tail"]


@pytest.mark.parametrize(
    ("horizon", "last", "decimals"),
    [(2.7, 3.0, 1), (11.72, 12.0, 0), (0.164, 0.2, 2), (1.0, 1.0, 1), (0.0, 1.0, 1)],
)
def test_ticks_are_round_numbers_from_zero_past_the_horizon(horizon: float, last: float, decimals: int) -> None:
    ticks, places = time_ticks(horizon)
    assert ticks[0] == 0 and ticks[-1] == pytest.approx(last) and places == decimals
    steps = {round(b - a, 6) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1
