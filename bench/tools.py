"""Tool calls through hct, against a real MCP server (the in-tree counter server over HTTP).

    python bench/tools.py [--trials 5] [--calls 200] [--json]

Two figures, measured in one run:

1. **Six reviewers with tools.** A parser, then six reviewers, each making 3 rounds of 2 parallel
   tool calls (the server's ``slow`` tool, 50–300 ms each, drawn once from the seed), then an
   aggregator; simulated model latencies. ``hct bench`` measures it: the reactive makespan as a
   multiple of the critical path over model *and* tool latencies, and the batch policy on the
   same draws.
2. **Per-call overhead.** ``--calls`` calls of the server's ``echo`` tool made one at a time by
   the bare ``mcp`` client, then by an agent of hct whose scripted model asks for them all in one
   round on a unit of concurrency 1 (so they run one after another through the whole engine path:
   refusal check, digest, ``tool_call`` event and the journal's turn, the functional unit, the
   result's redaction and events). Medians per call, and their difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.tools.servers import counter_http_server  # noqa: E402  (the test server is the bench's too)

REVIEWERS = ("security", "performance", "correctness", "style", "tests", "docs")


def reviewers_score(url: str, seed: int) -> dict[str, Any]:
    """The six-reviewer score: 3 rounds of 2 parallel ``slow`` calls each, latencies from ``seed``."""
    draw = random.Random(seed)
    agents: dict[str, Any] = {
        "parse": {"prompt": "Split the change.", "simulate": {"latency_ms": 300, "output_tokens": 200}},
    }
    for name in REVIEWERS:
        rounds = [
            [{"tool": "repo.slow", "args": {"ms": draw.randint(50, 300), "text": f"{name}-{r}-{c}"}} for c in range(2)]
            for r in range(3)
        ]
        agents[name] = {
            "prompt": f"Review for {name}: {{{{ cues.parse }}}}",
            "cues": ["parse"],
            "tools": ["repo.slow"],
            "max_steps": 4,
            "simulate": {"latency_ms": [200, 800], "output_tokens": 150, "tool_calls": rounds},
        }
    agents["aggregate"] = {
        "prompt": "Merge.",
        "cues": list(REVIEWERS),
        "simulate": {"latency_ms": 400, "output_tokens": 300},
    }
    return {
        "hct": 1,
        "name": "tool-reviewers",
        "tools": {"repo": {"url": url, "effects": "read", "concurrency": 16}},
        "agents": agents,
    }


def bench_reviewers(url: str, workdir: Path, trials: int) -> dict[str, Any]:
    path = workdir / "tool-reviewers.yaml"
    path.write_text(json.dumps(reviewers_score(url, seed=7)), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "hct_cli", "bench", str(path), "--compare", "batch", "--trials", str(trials), "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


async def bare_calls(url: str, calls: int) -> list[float]:
    """Per-call latency of ``echo`` through the bare mcp client, one call at a time."""
    from mcp import Client

    times: list[float] = []
    async with Client(url, mode="legacy", cache=None) as client:  # the SDK's own client, as a user would write it
        for i in range(calls):
            started = time.perf_counter()
            await client.call_tool("echo", {"text": f"x{i}"})
            times.append(time.perf_counter() - started)
    return times


def hct_calls(url: str, calls: int, *, on: str = "conductor", bus: str | None = None) -> list[float]:
    """Per-call intervals of ``echo`` made by one hct agent through the engine, one at a time
    (with ``bus``, in distributed mode; ``on``: where the server's calls are made)."""
    import hct_cli
    from hct_cli.events import Event

    score = {
        "hct": 1,
        "name": "tool-overhead",
        "tools": {"repo": {"url": url, "effects": "read", "concurrency": 1, "on": on}},
        "agents": {
            "caller": {
                "prompt": "Call.",
                "tools": ["repo.echo"],
                "simulate": {
                    "latency_ms": 0,
                    "tool_calls": [[{"tool": "repo.echo", "args": {"text": f"x{i}"}} for i in range(calls)]],
                },
            }
        },
    }
    events: list[tuple[float, Event]] = []
    with tempfile.TemporaryDirectory() as home:
        path = Path(home) / "overhead.yaml"
        path.write_text(json.dumps(score), encoding="utf-8")
        result = hct_cli.perform(
            str(path),
            simulate=True,
            home=Path(home),
            bus=bus,
            observers=[lambda e: events.append((time.perf_counter(), e))],
        )
    assert result.status == "completed", result.agents["caller"].error
    ends = [at for at, event in events if event.kind == "tool_result"]
    first_call = next(at for at, event in events if event.kind == "tool_call")
    return [b - a for a, b in zip([first_call, *ends[:-1]], ends, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, counter_http_server(Path(tmp)) as (url, _state):
        report = bench_reviewers(url, Path(tmp), args.trials)
        bare = asyncio.run(bare_calls(url, args.calls))
        ours = hct_calls(url, args.calls)
        bare_again = asyncio.run(bare_calls(url, args.calls))  # the bare client before and after: load drift
    reactive = report["policies"]["reactive"]
    batch = report["policies"]["batch"]
    figures = {
        "reviewers": {
            "critical_path_s": report["critical_path_s"],
            "reactive_makespan_s": reactive["makespan_s"],
            "reactive/critical_path": report.get("reactive/critical_path"),
            "batch_makespan_s": batch["makespan_s"],
            "batch/reactive": round(batch["makespan_s"] / reactive["makespan_s"], 4),
        },
        "per_call": {
            "calls": args.calls,
            "bare_median_ms": round(statistics.median(bare) * 1e3, 3),
            "bare_again_median_ms": round(statistics.median(bare_again) * 1e3, 3),
            "hct_median_ms": round(statistics.median(ours) * 1e3, 3),
            "overhead_ms": round((statistics.median(ours) - statistics.median(bare + bare_again)) * 1e3, 3),
        },
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    r, c = figures["reviewers"], figures["per_call"]
    print(f"six reviewers, 3 rounds x 2 tool calls (50-300 ms), {args.trials} trials:")
    print(
        f"  critical path {r['critical_path_s']:.3f} s, reactive {r['reactive_makespan_s']:.3f} s "
        f"({r['reactive/critical_path']}x), batch {r['batch_makespan_s']:.3f} s ({r['batch/reactive']}x reactive)"
    )
    print(
        f"per call over {c['calls']} echo calls: bare mcp {c['bare_median_ms']} / {c['bare_again_median_ms']} ms, "
        f"through hct {c['hct_median_ms']} ms: +{c['overhead_ms']} ms"
    )


if __name__ == "__main__":
    main()
