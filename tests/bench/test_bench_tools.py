"""``hct bench`` on a tool-using score: the in-tree counter server's ``slow`` tool (50-150 ms a
call, a real MCP server over streamable HTTP) between simulated model rounds.

The critical path the bench reports runs over model *and* tool latencies
(``AgentRecord.tool_time_s``: each round counts its longest call), so it is at least the tool
time the score asks for on its longest chain: each ``slow`` call sleeps its ``ms`` before it
answers. That inequality holds by construction; no test here asserts a timing beyond it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hct_cli.bench.measure import run_bench
from hct_cli.program.compile import compile_score
from hct_cli.program.lint import load_score
from tests.tools.servers import counter_http_server

pytestmark = pytest.mark.timeout(180)

# Agent -> its rounds, each the ms of its parallel slow calls.
SCRIPT: dict[str, list[list[int]]] = {}
_draw = random.Random(11)
for _name, _rounds in (("reader", 3), ("checker", 1)):
    SCRIPT[_name] = [[_draw.randint(50, 150) for _ in range(2)] for _ in range(_rounds)]
CHAINS = (("plan", "reader", "merge"), ("plan", "checker", "merge"))


def score_data(url: str) -> dict[str, Any]:
    agents: dict[str, Any] = {"plan": {"prompt": "Plan.", "simulate": {"latency_ms": [100, 200]}}}
    for name, rounds in SCRIPT.items():
        agents[name] = {
            "prompt": f"Work on {{{{ cues.plan }}}} as the {name}.",
            "cues": ["plan"],
            "tools": ["counter.slow"],
            "max_steps": len(rounds) + 1,
            "simulate": {
                "latency_ms": [100, 300],
                "tool_calls": [
                    [
                        {"tool": "counter.slow", "args": {"ms": ms, "text": f"{name}-{r}-{c}"}}
                        for c, ms in enumerate(round_)
                    ]
                    for r, round_ in enumerate(rounds)
                ],
            },
        }
    agents["merge"] = {"prompt": "Merge.", "cues": list(SCRIPT), "simulate": {"latency_ms": [100, 200]}}
    return {
        "hct": 1,
        "name": "bench-tools",
        "tools": {"counter": {"url": url, "effects": "read", "concurrency": 8}},
        "agents": agents,
    }


def asked_tool_s(agent: str) -> float:
    """The least time the agent's tool calls keep it waiting: each round, its longest call's ms."""
    return sum(max(round_) for round_ in SCRIPT.get(agent, ())) / 1000


@pytest.fixture
def score(tmp_path: Path) -> Iterator[Path]:
    with counter_http_server(tmp_path) as (url, _state):
        path = tmp_path / "bench-tools.yaml"
        path.write_text(json.dumps(score_data(url)))
        yield path


def test_hct_bench_measures_a_tool_using_score_with_the_batch_policy_beside_it(score: Path) -> None:
    options = ("--compare", "batch", "--trials", "2", "--time-scale", "0.2", "--json")
    proc = subprocess.run(
        [sys.executable, "-m", "hct_cli", "bench", str(score), *options],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["agents"] == 4 and report["trials"] == 2
    assert set(report["policies"]) == {"reactive", "batch"}
    assert "batch/reactive" in report["ratios"]
    assert report["critical_path_s"] >= max(sum(asked_tool_s(agent) for agent in chain) for chain in CHAINS)
    assert report["reactive/critical_path"] > 0


def test_the_critical_path_includes_the_tool_time_of_the_longest_chain(score: Path) -> None:
    program = compile_score(load_score(score))
    report = run_bench(program, policies=("reactive", "batch"), trials=1, time_scale=0.2)
    (critical,) = report.critical_paths
    for policy in ("reactive", "batch"):
        result = report.policies[policy].last
        assert result is not None and result.status == "completed"
        records = result.agents
        for name, rounds in SCRIPT.items():
            assert sorted({(c["step"], c["tool"]) for c in records[name].tool_calls}) == [
                (step, "counter.slow") for step in range(len(rounds))
            ]
            assert records[name].tool_time_s >= asked_tool_s(name)  # each slow call slept its ms
    reactive = report.policies["reactive"].last
    assert reactive is not None
    # The critical path is at least the measured tool time, and so the asked-for tool time, of every chain.
    measured = max(sum(reactive.agents[agent].tool_time_s for agent in chain) for chain in CHAINS)
    asked = max(sum(asked_tool_s(agent) for agent in chain) for chain in CHAINS)
    assert critical >= measured >= asked > 0
    # It is the longest chain over each agent's latency, which counts its rounds' tool time.
    chains = max(sum(reactive.agents[agent].latency_s for agent in chain) for chain in CHAINS)
    assert critical == pytest.approx(chains)
    for name in SCRIPT:
        record = reactive.agents[name]
        model_s = sum(call.result.latency_s for call in record.all_calls())
        assert record.latency_s == pytest.approx(model_s + record.tool_time_s)
